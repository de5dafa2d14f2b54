"""`midigen prepare` at Lakh scale: throughput, parallel speed-up, memory, batching, projection.

What it measures, on synthetic band-like corpora written by ``benchmarks/synthetic.py`` (kept in
``--workdir`` between runs, so reruns skip the generation):

1. **Throughput and speed-up** -- ``prepare(sources, out, workers=k, progress=False)`` with 1 and
   2 worker processes on the ``--files-small`` corpus (default 2000 files), each run into a fresh
   output folder (nothing comes from the cache), ``--repeat`` times round-robin (1, 2, 1, 2, ...);
   the best run of each is kept. *End-to-end* is ``PrepareResult.seconds`` (what ``midigen
   prepare`` prints: finding files, starting the workers, encoding, assembling the split files).
   *Steady state* is the encoding phase alone: files and notes per second between the 10th and
   the 90th percentile of the results the workers send back (every worker is up and busy; no
   start-up, no tail, no assembly). Phases are timed by wrapping
   ``midigen.data.pool.Pool.run`` and ``midigen.data.prepare.assemble`` in the measuring process (the package's
   code is not changed). "parent CPU" is the CPU time of the process running ``prepare()``
   during the encoding phase, over its wall time: near 100% would mean the parent is the
   bottleneck.
2. **Peak memory** (2 workers) at ``--files-small`` and ``--files-large`` files: every run of
   ``prepare()`` happens in a child process, which reports its own VmHWM at exit and
   ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest worker; the multiprocessing resource
   tracker is far smaller). ``--poll-memory SECONDS`` also polls ``/proc/<pid>/status`` of that
   process and its descendants from this script as a cross-check; it is off by default because
   on a 2-core machine the polling takes CPU from the 2-worker runs (it cost them a few percent
   in earlier runs). "parent RSS growth" is the parent's VmRSS at the end of encoding minus at
   its first result.
3. **Batch throughput** (if ``midigen.data.batching`` is importable) -- each strategy
   (``random_windows``, ``per_song``, ``contiguous``) on the train split of the large prepared
   corpus, read from the memmap (``location="disk"``, page cache warm) and from RAM: batches/s
   and tokens/s (batch x seq positions) over ``--batches`` batches of ``--batch-size`` x
   ``--seq-len``, after the first batch (whose time, which includes planning the epoch, is shown
   apart), one torch thread. The ratio column divides by ``--train-tokens-per-s``: what a training
   step of the default model consumes (GPT, width 256, 4 layers, 4 heads, seq 256, batch 8, on
   this machine's CPU: ~4.3k tokens/s). ``--locations disk,ram,cuda`` adds a corpus held on the GPU
   (batches cut there, timed with ``torch.cuda.synchronize``); ``--batching-only CORPUS`` runs only
   this section, on any prepared corpus (e.g. ``midigen prepare bach --out /tmp/bach``).
4. **Lakh projection** -- the full Lakh MIDI Dataset (176,581 files, ~5% broken), assuming
   ``--lakh-notes-per-file`` notes per readable file (default 5000: the four Lakh files in
   ``../shared/corpus/multitrack`` hold 2.9k-6.8k, mean 4.7k; these synthetic files hold ~2.2k).
   A worker's job on one file (``encode_one``: read, hash, parse, encode, append to the cache shard)
   is timed in this process on 400 synthetic files and fitted as ``a + b * notes``; the large
   run's wall time per second of that modelled work then scales to Lakh (main estimate), next to
   the two bounds "all cost per note" (measured notes/s) and "all cost per file" (files/s). Disk
   size uses the measured bytes per token of the split files and of the token cache (shards)
   (which ``prepare`` keeps for resuming), and tokens per note of the real Lakh files.

Run from the repository root (2000 and 20000 files; 1.5-5 minutes on 2 shared cores once the
corpora exist, ~1 more minute to generate them the first time)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/prepare.py --markdown

``--skip-large`` runs only the small corpus (a quick check, no batching or memory comparison).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

LAKH_FILES = 176_581
MIB = 1024 * 1024


# ============================================================ the child: one prepare() run
def _proc_status(pid="self") -> dict:
    """VmHWM/VmRSS of a process in bytes ({} if it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def child_main(sources: list[str], out: str, workers: int) -> None:
    """Run prepare() once, instrumented; print one JSON line with what happened."""
    from midigen.data import prepare as P
    from midigen.data.pool import Pool

    marks: dict = {}
    orig_pool, orig_assemble = Pool.run, P.assemble

    def run_pool(self, paths, timeout, on_result, on_failure):
        marks["pool_start"] = time.monotonic()
        cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        seen = {"n": 0, "notes": 0, "first": None, "rss_first": None, "last": None}
        times, notes = [], []

        def wrapped(r):
            now = time.monotonic()
            if seen["first"] is None:
                seen["first"] = now
                seen["rss_first"] = _proc_status().get("VmRSS")
            seen["last"] = now
            seen["n"] += 1
            seen["notes"] += r.notes
            times.append(now)
            notes.append(r.notes)
            on_result(r)

        restarts = orig_pool(self, paths, timeout, wrapped, on_failure)
        marks["pool_end"] = time.monotonic()
        marks["pool_parent_cpu"] = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
        marks["rss_end_of_encoding"] = _proc_status().get("VmRSS")
        marks.update({f"enc_{k}": v for k, v in seen.items()})
        # Steady state: from the 10th to the 90th percentile of results (every worker is up and
        # none has run dry yet).
        lo, hi = len(times) // 10, (len(times) * 9) // 10
        dt = max(times[hi] - times[lo], 1e-9) if hi > lo else 1e-9
        marks["steady_files_per_s"] = (hi - lo) / dt
        marks["steady_notes_per_s"] = sum(notes[lo + 1 : hi + 1]) / dt
        return restarts

    def assemble(*a, **kw):
        t = time.monotonic()
        m = orig_assemble(*a, **kw)
        marks["assemble_s"] = time.monotonic() - t
        return m

    Pool.run, P.assemble = run_pool, assemble
    t0 = time.monotonic()
    r = P.prepare(sources, out, workers=workers, progress=False)
    wall = time.monotonic() - t0
    m = r.manifest
    first, last = marks["enc_first"], marks["enc_last"]
    status = _proc_status()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "files": m["files_ok"] + m["files_failed"], "files_ok": m["files_ok"], "failed": m["files_failed"],
        "encoded": r.encoded, "cached": r.cached, "restarts": r.worker_restarts,
        "seconds": r.seconds, "wall": wall, "notes_per_second": r.notes_per_second,
        "notes": marks["enc_notes"],
        "tokens": sum(s["tokens"] for s in m["splits"].values()),
        "split_notes": sum(s["notes"] for s in m["splits"].values()),
        "startup_s": first - marks["pool_start"], "encode_s": last - first,
        "pool_tail_s": marks["pool_end"] - last, "before_pool_s": marks["pool_start"] - t0,
        "assemble_s": marks["assemble_s"],
        "steady_files_per_s": marks["steady_files_per_s"], "steady_notes_per_s": marks["steady_notes_per_s"],
        "parent_cpu_in_pool": marks["pool_parent_cpu"] / max(marks["pool_end"] - marks["pool_start"], 1e-9),
        "parent_rss_first_result": marks["enc_rss_first"], "parent_rss_end_of_encoding": marks["rss_end_of_encoding"],
        "self_hwm": status.get("VmHWM"), "children_maxrss": kids.ru_maxrss * 1024,
        "children_cpu": kids.ru_utime + kids.ru_stime,
        "self_cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
    }))


# ============================================================ the parent: monitor a child
def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _role(pid: int) -> str:
    """A descendant of the measured process: the multiprocessing resource tracker, or a worker.

    (Not by ``spawn_main`` in the command line: forked workers carry their parent's.)
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return "gone"
    return "tracker" if b"resource_tracker" in cmd else "worker"


def run_prepare(sources, out: Path, workers: int, poll: float | None = None, scan_every: float = 0.5) -> dict:
    """Run prepare() in a child process into a fresh ``out``.

    Memory comes from the child's own report (its VmHWM; ``getrusage(RUSAGE_CHILDREN)`` for the
    largest worker). ``poll`` (seconds) also polls /proc from here, as a cross-check: off by
    default, because on a 2-core machine the polling takes CPU from the second worker.
    """
    if out.exists():
        shutil.rmtree(out)
    # Write back what earlier runs left dirty (~1 GB at 20k files) before the clock starts: else the
    # kernel flushes it during this run and charges the CPU there (seen: 2-worker runs 6.0-7.6 s
    # instead of 5.8 s at 20k files).
    os.sync()
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import prepare as b; b.child_main({list(map(str, sources))!r}, {str(out)!r}, {workers})"
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-c", code], stdout=so, stderr=se, cwd=str(ROOT))
        procs: dict[int, dict] = {}  # pid -> {role, hwm, rss}
        kids: list[int] = []
        parent_rss = []  # (t, VmRSS) samples of the parent
        next_scan = 0.0
        while poll is None and p.poll() is None:
            time.sleep(0.01)
        while poll is not None and p.poll() is None:
            now = time.monotonic()
            if now >= next_scan:
                kids = _descendants(p.pid)
                for k in kids:
                    if k not in procs:
                        procs[k] = {"role": _role(k), "hwm": 0, "rss": 0}
                next_scan = now + scan_every
            for pid in [p.pid] + kids:
                s = _proc_status(pid)
                if not s:
                    continue
                e = procs.setdefault(pid, {"role": "parent" if pid == p.pid else _role(pid), "hwm": 0, "rss": 0})
                e["hwm"] = max(e["hwm"], s.get("VmHWM", 0))
                e["rss"] = max(e["rss"], s.get("VmRSS", 0))
                if pid == p.pid and "VmRSS" in s:
                    parent_rss.append((now - t0, s["VmRSS"]))
            time.sleep(poll)
        process_wall = time.monotonic() - t0
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if p.returncode != 0:
        raise RuntimeError(f"prepare run failed (exit {p.returncode}):\n{stderr[-3000:]}")
    r = json.loads(stdout.strip().splitlines()[-1])
    workers_seen = [e for e in procs.values() if e["role"] == "worker"]
    r.update(
        workers=workers, process_wall=process_wall,
        polled_parent_hwm=procs.get(p.pid, {}).get("hwm", 0),
        polled_worker_hwm=max((e["hwm"] for e in workers_seen), default=0),
        polled_workers=len(workers_seen),
        polled_tracker_hwm=max((e["hwm"] for e in procs.values() if e["role"] == "tracker"), default=0),
        parent_peak=max(r["self_hwm"] or 0, procs.get(p.pid, {}).get("hwm", 0)),
        worker_peak=max(r["children_maxrss"], max((e["hwm"] for e in workers_seen), default=0)),
    )
    if r["cached"]:
        raise RuntimeError(f"{r['cached']} files came from the cache: the output folder was not fresh")
    return r


# ============================================================ corpora
def ensure_corpus(workdir: Path, n: int, seed: int) -> Path:
    from synthetic import write_synthetic_corpus

    d = workdir / f"synth-{n}-seed{seed}"
    r = write_synthetic_corpus(d, n, seed, workers=os.cpu_count() or 1)
    if r["written"]:
        print(f"# generated {d}: {r['written']} files in {r['seconds']:.1f} s ({r['skipped']} were there)", file=sys.stderr)
    found = sum(1 for _ in d.rglob("*.mid"))
    if found != n:
        raise RuntimeError(f"{d} holds {found} .mid files, expected {n}: delete it and rerun")
    for f in d.rglob("*.mid"):  # warm the page cache, so the first timed run does not read the disk
        f.read_bytes()
    return d


def disk_usage(path: Path, pattern: str) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.glob(pattern) if f.is_file())


# ============================================================ real Lakh files vs synthetic
def calibrate(workdir: Path, synth_dir: Path, n_synth: int = 400, repeat: int = 3) -> dict:
    """Per-file cost of what a worker does (``encode_one``: read, hash, parse, encode, append to
    its cache shard), in this process, for synthetic files and the real Lakh files in ../shared.

    Each file is timed ``repeat`` times, each time into a fresh cache (so nothing is a cache
    hit), keeping its best time. A least-squares fit ``seconds = a + b * notes`` over the
    synthetic files gives the fixed cost per file and the cost per note.
    """
    import numpy as np

    from midigen.data.cache import ShardWriter
    from midigen.data.worker import encode_one
    from midigen.encoding import Tokenizer

    tokenizer = Tokenizer()
    files = sorted(synth_dir.rglob("*.mid"))
    synth = files[:: max(1, len(files) // n_synth)][:n_synth]
    real = sorted((ROOT.parent / "shared" / "corpus" / "multitrack").glob("*.mid"))

    def measure(paths):
        best = np.full(len(paths), np.inf)
        notes = np.zeros(len(paths))
        tokens = np.zeros(len(paths))
        for rep in range(repeat):
            cache = workdir / f"calibration-cache-{rep}"
            shutil.rmtree(cache, ignore_errors=True)
            writer, known = ShardWriter(cache, tokenizer.dtype), np.zeros(0, "S32")
            for i, f in enumerate(paths):
                t = time.perf_counter()
                r = encode_one(i, str(f), tokenizer, writer, known)
                best[i] = min(best[i], time.perf_counter() - t)
                tokens[i], notes[i] = r.tokens, r.notes
            writer.close()
            shutil.rmtree(cache, ignore_errors=True)
        size = np.array([f.stat().st_size for f in paths], float)
        return {"files": len(paths), "seconds": best, "notes": notes, "tokens": tokens, "bytes": size}

    out = {"synthetic": measure(synth)}
    if real:
        out["real"] = measure(real)
    s = out["synthetic"]
    b, a = np.polyfit(s["notes"], s["seconds"], 1)
    out["fit"] = {"a": float(a), "b": float(b)}
    return out


# ============================================================ batching
def bench_batching(corpus_dir: Path, batches: int, batch_size: int, seq_len: int, train_tps: float,
                   locations=("disk", "ram")) -> list[dict] | None:
    try:
        from midigen.data.batching import make_batches
    except ImportError as exc:
        print(f"# batching skipped: {exc}", file=sys.stderr)
        return None
    import torch

    from midigen.data import PreparedCorpus

    torch.set_num_threads(1)
    rows = []
    for location in locations:
        # a torch device ("cuda"): batches are cut there; int() of each batch's target count below
        # waits for the device, so the timings hold for asynchronous devices too
        sync = torch.cuda.synchronize if location.startswith("cuda") else (lambda: None)
        if location.startswith("cuda"):  # start CUDA first: its start-up is not the corpus's load time
            torch.zeros(1, device=location)
            sync()
        t = time.perf_counter()
        corpus = PreparedCorpus(corpus_dir, "train", location=location)
        sync()
        load_s = time.perf_counter() - t
        if location.startswith("cuda"):  # CUDA loads each kernel on its first use: not a batch's cost
            for strategy in ("random_windows", "per_song", "contiguous"):
                for _, batch in zip(range(3), make_batches(corpus, strategy, batch_size, seq_len)):
                    int((batch["y"] != -100).sum())
            sync()
        for strategy in ("random_windows", "per_song", "contiguous"):
            kw = {"num_batches": batches + 1} if strategy == "random_windows" else {}
            b = make_batches(corpus, strategy, batch_size, seq_len, **kw)
            t = time.perf_counter()
            it = iter(b)
            first = next(it)
            sync()
            first_s = time.perf_counter() - t
            n = positions = targets = 0
            t = time.perf_counter()
            for batch in it:
                n += 1
                positions += batch["x"].numel()
                targets += int((batch["y"] != -100).sum())
                if n == batches:
                    break
            sync()
            dt = time.perf_counter() - t
            assert set(first) >= {"x", "y", "steps", "piece"}
            rows.append({
                "strategy": strategy, "location": location, "load_s": load_s, "first_s": first_s,
                "batches": n, "batches_per_s": n / dt, "tokens_per_s": positions / dt,
                "targets_per_s": targets / dt, "padding": 1 - targets / max(positions, 1),
                "x_training": positions / dt / train_tps,
            })
        del corpus
    return rows


def print_batching(bench: list[dict], corpus_dir: Path, label: str, args, say) -> None:
    rows = [[b["strategy"], b["location"], f"{b['load_s'] * 1e3:,.0f}", f"{b['first_s'] * 1e3:,.0f}",
             f"{b['batches_per_s']:,.0f}", f"{b['tokens_per_s'] / 1e6:,.2f}M", f"{b['padding']:.0%}",
             f"{b['x_training']:,.0f}x"] for b in bench]
    m = json.loads((corpus_dir / "manifest.json").read_text())["splits"]["train"]
    say(f"\nbatch throughput: train split of {label} ({m['files']:,} pieces, {m['tokens']:,} tokens), "
        f"batch {args.batch_size} x seq {args.seq_len}, up to {args.batches} batches (an epoch may end sooner), "
        f"1 torch thread; training consumes ~{args.train_tokens_per_s:,.0f} tokens/s\n")
    say(table(["strategy", "location", "load (ms)", "first batch (ms, plans the epoch)", "batches/s", "tokens/s",
               "padding", "x training"], rows, args.markdown))


# ============================================================ tables
def table(headers, rows, markdown: bool) -> str:
    cells = [[str(c) for c in r] for r in rows]
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(out)
    w = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.rjust(w[i]) for i, h in enumerate(headers)), "  ".join("-" * x for x in w)]
    out += ["  ".join(c.rjust(w[i]) for i, c in enumerate(r)) for r in cells]
    return "\n".join(out)


def mib(x) -> str:
    return f"{x / MIB:,.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files-small", type=int, default=2000)
    ap.add_argument("--files-large", type=int, default=20000)
    ap.add_argument("--skip-large", action="store_true", help="only the small corpus (no memory comparison, no batching)")
    ap.add_argument("--workdir", default="/tmp/midigen-bench", help="corpora and outputs (kept between runs; never inside the repository)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpora")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per worker count on the small corpus (best kept)")
    ap.add_argument("--repeat-large", type=int, default=2, help="timed runs per worker count on the large corpus (best kept)")
    ap.add_argument("--poll-memory", type=float, default=None, metavar="SECONDS",
                    help="also poll /proc for memory every SECONDS during the runs (a cross-check; costs CPU)")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--train-tokens-per-s", type=float, default=4300.0, help="training consumption to compare batching with")
    ap.add_argument("--lakh-notes-per-file", type=float, default=5000.0)
    ap.add_argument("--lakh-broken", type=float, default=0.05)
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--batching-only", metavar="CORPUS", type=Path,
                    help="only section 3 (batch throughput), on this prepared corpus (e.g. from `midigen prepare bach`)")
    ap.add_argument("--locations", default="disk,ram",
                    help="comma-separated corpus locations for the batching section: disk, ram, or a torch device "
                         "such as cuda (default disk,ram)")
    args = ap.parse_args(argv)
    locations = tuple(x.strip() for x in args.locations.split(",") if x.strip())
    say = lambda *a: print(*a, flush=True)  # noqa: E731

    if args.batching_only:
        bench = bench_batching(args.batching_only, args.batches, args.batch_size, args.seq_len, args.train_tokens_per_s,
                               locations)
        if not bench:
            return 1
        print_batching(bench, args.batching_only, str(args.batching_only), args, say)
        return 0

    workdir = Path(args.workdir).resolve()
    if workdir == ROOT or ROOT in workdir.parents:
        ap.error(f"--workdir must be outside the repository ({ROOT})")
    workdir.mkdir(parents=True, exist_ok=True)
    md = args.markdown
    log = lambda *a: print("#", *a, file=sys.stderr, flush=True)  # noqa: E731

    load0 = os.getloadavg()
    small = ensure_corpus(workdir, args.files_small, args.seed)
    large = None if args.skip_large else ensure_corpus(workdir, args.files_large, args.seed)

    # ---- 1. throughput, 1 vs 2 workers, round-robin, on both corpora
    def speed(corpus: Path, n_files: int, repeat: int, label: str):
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for rep in range(repeat):
            for k in (1, 2):
                r = run_prepare([corpus], workdir / f"out-{n_files}-w{k}", k, poll=args.poll_memory)
                log(f"{label} run {rep + 1}, {k} worker(s): {r['seconds']:.2f} s, {r['notes_per_second']:,.0f} notes/s, "
                    f"steady {r['steady_notes_per_s']:,.0f} notes/s, parent cpu {r['parent_cpu_in_pool']:.0%}")
                runs[k].append(r)
        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        best_steady = {k: max(v, key=lambda r: r["steady_files_per_s"]) for k, v in runs.items()}
        rows = []
        for k in (1, 2):
            b, st = best[k], best_steady[k]
            rows.append([
                k, " / ".join(f"{r['seconds']:.2f}" for r in runs[k]),
                f"{n_files / b['seconds']:,.0f}", f"{b['notes_per_second']:,.0f}",
                f"{best[1]['seconds'] / b['seconds']:.2f}x",
                f"{st['steady_files_per_s']:,.0f}", f"{st['steady_notes_per_s']:,.0f}",
                f"{st['steady_files_per_s'] / best_steady[1]['steady_files_per_s']:.2f}x",
                f"{b['before_pool_s']:.2f} + {b['startup_s']:.2f} + {b['encode_s']:.2f} + {b['assemble_s']:.2f}",
                f"{b['parent_cpu_in_pool']:.0%}", f"{b['self_cpu']:.1f} / {b['children_cpu']:.1f}",
            ])
        load = os.getloadavg()
        say(f"\nprepare throughput: {n_files} synthetic files, {best[1]['notes']:,} notes, "
            f"{best[1]['tokens']:,} tokens; fresh output each run, best of {repeat} "
            f"(load average at start {load0[0]:.1f}, now {load[0]:.1f}, on {os.cpu_count()} CPUs)\n")
        say(table(["workers", "runs (s)", "files/s", "notes/s", "speed-up", "steady files/s", "steady notes/s",
                   "steady speed-up", "phases (s): find + start-up + encode + assemble", "parent CPU while encoding",
                   "CPU s: parent / workers"], rows, md))
        one = best[1]
        serial = one["before_pool_s"] + one["startup_s"] + one["assemble_s"] + one["pool_tail_s"]
        bound = one["seconds"] / (one["seconds"] - one["encode_s"] / 2)
        say(f"\nAmdahl bound: in the best 1-worker run, {serial:.2f} s of {one['seconds']:.2f} s is outside the "
            f"encoding phase (finding files, worker start-up, assembling the splits); halving only the "
            f"encoding phase ({one['encode_s']:.2f} s) gives at most {bound:.2f}x end-to-end with 2 workers "
            f"(assembling is shared by the workers too, so the measured speed-up can pass this bound).")
        return runs

    runs = speed(small, args.files_small, args.repeat, "small")
    runs_large = speed(large, args.files_large, args.repeat_large, "large") if large is not None else None

    # ---- worker start-up: what a spawned worker imports, against what it needs
    rows = []
    for label, mods in (("midigen.data.prepare (what a worker imports)", "midigen.data.prepare"),
                        ("midigen.midi + midigen.encoding (what encoding needs)", "midigen.midi, midigen.encoding"),
                        ("torch alone", "torch")):
        code = (f"import time, resource; t = time.perf_counter(); import {mods}; dt = time.perf_counter() - t; "
                f"import sys; print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 'torch' in sys.modules)")
        res = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), check=True).stdout.split()
               for _ in range(3)]
        rows.append([label, f"{min(float(r[0]) for r in res):.2f}", f"{max(int(r[1]) for r in res) / 1024:,.0f}", res[0][2]])
    say("\nworker start-up: importing in a fresh interpreter (best of 3)\n")
    say(table(["import", "seconds", "peak RSS MiB", "torch loaded"], rows, md))

    # ---- 2. memory at small and large (2 workers)
    mem = [("small", min(runs[2], key=lambda r: r["seconds"]) | {"peak_parent": max(r["parent_peak"] for r in runs[2]),
                                                                 "peak_worker": max(r["worker_peak"] for r in runs[2])})]
    if large is not None:
        r = min(runs_large[2], key=lambda r: r["seconds"])
        mem.append(("large", r | {"peak_parent": max(x["parent_peak"] for x in runs_large[2]),
                                  "peak_worker": max(x["worker_peak"] for x in runs_large[2])}))
    rows = []
    base = mem[0][1]
    for _, r in mem:
        growth = (r["parent_rss_end_of_encoding"] or 0) - (r["parent_rss_first_result"] or 0)
        rows.append([
            f"{r['files']:,}", f"{r['notes']:,}", f"{r['tokens']:,}", f"{r['seconds']:.1f}",
            f"{r['files'] / r['seconds']:,.0f}", f"{r['notes_per_second']:,.0f}", f"{r['steady_notes_per_s']:,.0f}",
            mib(r["peak_parent"]), f"{r['peak_parent'] / base['peak_parent']:.2f}x",
            f"{growth / MIB:+.1f}", mib(r["peak_worker"]), f"{r['peak_worker'] / base['peak_worker']:.2f}x",
            f"{r['parent_cpu_in_pool']:.0%}",
            f"{r['before_pool_s']:.2f} + {r['startup_s']:.2f} + {r['encode_s']:.2f} + {r['assemble_s']:.2f}",
        ])
    say("\nprepare memory, 2 workers (peak RSS = VmHWM, MiB: the child's own VmHWM and getrusage of its workers"
        + (", or polled /proc if larger" if args.poll_memory else "") + ")\n")
    say(table(["files", "notes", "tokens", "s", "files/s", "notes/s", "steady notes/s", "parent peak", "vs small",
               "parent RSS growth while encoding", "max worker peak", "vs small", "parent CPU",
               "phases (s): find + start-up + encode + assemble"], rows, md))
    for name, r in mem:
        log(f"{name}: polled parent {mib(r['polled_parent_hwm'])} / self-reported {mib(r['self_hwm'] or 0)} MiB; "
            f"polled worker {mib(r['polled_worker_hwm'])} ({r['polled_workers']} workers seen) / "
            f"rusage {mib(r['children_maxrss'])} MiB; tracker {mib(r['polled_tracker_hwm'])} MiB; parent VmRSS at first "
            f"result {r['parent_rss_first_result']:,} B, at end of encoding {r['parent_rss_end_of_encoding']:,} B")

    # ---- 3. batching on the large corpus
    big = mem[-1][1]
    out_big = workdir / (f"out-{args.files_large}-w2" if large is not None else f"out-{args.files_small}-w2")
    bench = None
    if large is not None:
        bench = bench_batching(out_big, args.batches, args.batch_size, args.seq_len, args.train_tokens_per_s, locations)
        if bench:
            print_batching(bench, out_big, f"the {args.files_large:,}-file corpus", args, say)

    # ---- 4. Lakh projection
    cal = calibrate(workdir, small)
    a, b = cal["fit"]["a"], cal["fit"]["b"]
    cost = lambda notes: a + b * notes  # noqa: E731  single-process seconds for one file
    synth_tpn = big["tokens"] / max(big["split_notes"], 1)
    tpn = float(cal["real"]["tokens"].sum() / cal["real"]["notes"].sum()) if "real" in cal else synth_tpn
    split_bytes = disk_usage(out_big, "*.bin")
    cache_bytes = sum(f.stat().st_blocks * 512 for f in (out_big / "cache").rglob("*") if f.is_file())
    all_bytes = sum(f.stat().st_blocks * 512 for f in out_big.rglob("*") if f.is_file())
    n_ok = LAKH_FILES * (1 - args.lakh_broken)
    n_bad = LAKH_FILES - n_ok
    npf = args.lakh_notes_per_file
    notes = n_ok * npf
    tokens = notes * tpn
    # Worker start-up is a fixed cost; the rest of the measured run is scaled by the modelled
    # single-process work: synthetic files by the fit, a Lakh file by the per-note cost measured
    # on the real Lakh files (it includes their per-file overhead); broken files cost about `a`.
    modelled = big["files"] * a + b * big["notes"]
    wall_per_work = (big["seconds"] - big["startup_s"]) / modelled
    if "real" in cal:
        lakh_file = float(cal["real"]["seconds"].sum() / cal["real"]["notes"].sum()) * npf
        lakh_how = "real Lakh files' cost per note"
    else:
        lakh_file, lakh_how = cost(npf), "the fit"
    t_model = big["startup_s"] + wall_per_work * (n_ok * lakh_file + n_bad * a)
    t_notes = notes / big["notes_per_second"]
    t_files = LAKH_FILES / (big["files"] / big["seconds"])
    per_file_cache = cache_bytes / big["files"]
    say(f"\nLakh projection: {LAKH_FILES:,} files, {args.lakh_broken:.0%} broken, assumed "
        f"{npf:,.0f} notes per readable file; from the {big['files']:,}-file run with 2 workers "
        f"({big['seconds']:.1f} s, {big['files'] / big['seconds']:,.0f} files/s, "
        f"{big['notes_per_second']:,.0f} notes/s end-to-end)\n")
    rows = [
        ["notes", f"{notes / 1e6:,.0f}M", f"{n_ok:,.0f} readable files x {npf:,.0f}"],
        ["tokens", f"{tokens / 1e6:,.0f}M", f"{tpn:.2f} tokens/note" + (" (real Lakh files; synthetic {:.2f})".format(synth_tpn) if "real" in cal else "")],
        ["time, 2 workers (cost model)", f"{t_model / 60:,.0f} min",
         f"one process: {lakh_file * 1e3:.2f} ms per Lakh file ({lakh_how}); synthetic fit {a * 1e3:.2f} ms/file + "
         f"{b * 1e9:,.0f} ns/note; the measured run took {wall_per_work:.2f} s wall per s of that work after start-up"],
        ["time, 2 workers (at measured notes/s)", f"{t_notes / 60:,.0f} min", "pessimistic: as if the cost were all per note"],
        ["time, 2 workers (at measured files/s)", f"{t_files / 60:,.0f} min", "optimistic: as if the cost were all per file"],
        ["split files (tokens + steps)", f"{tokens * split_bytes / big['tokens'] / 1e9:.1f} GB", f"{split_bytes / big['tokens']:.2f} B/token measured"],
        ["token cache (kept for resuming)", f"{tokens * cache_bytes / big['tokens'] / 1e9:.1f} GB",
         f"{cache_bytes / big['tokens']:.2f} B/token measured ({per_file_cache / 1024:.1f} KiB/file on disk)"],
        ["whole output folder", f"{tokens * all_bytes / big['tokens'] / 1e9:.1f} GB", "split files + cache + index/manifest"],
    ]
    say(table(["", "projected", "from"], rows, md))
    say("\nper-file cost of a worker's job (encode_one: read, hash, parse, encode, append to the cache shard), one process, best of 3:\n")
    rows = []
    for name in ("synthetic", "real"):
        if name not in cal:
            continue
        c = cal[name]
        rows.append([name + (" (../shared/corpus/multitrack, Lakh)" if name == "real" else ""), c["files"],
                     f"{c['bytes'].mean() / 1024:.1f}", f"{c['notes'].mean():,.0f}", f"{c['tokens'].sum() / c['notes'].sum():.2f}",
                     f"{c['seconds'].mean() * 1e3:.2f}", f"{cost(c['notes']).mean() * 1e3:.2f}",
                     f"{c['notes'].sum() / c['seconds'].sum():,.0f}"])
    say(table(["files", "n", "KiB/file", "notes/file", "tokens/note", "ms/file", "ms/file (fit)", "notes/s"], rows, md))

    # ---- the targets, judged on this run
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    say("\n**Targets**\n")
    for label, rs in (("2k", runs), ("20k", runs_large)):
        if not rs:
            continue
        n = args.files_small if label == "2k" else args.files_large
        e2e = min(r["seconds"] for r in rs[1]) / min(r["seconds"] for r in rs[2])
        steady = max(r["steady_files_per_s"] for r in rs[2]) / max(r["steady_files_per_s"] for r in rs[1])
        say(f"- 2 workers >= 1.8x one worker, {n:,} files: {e2e:.2f}x end to end ({verdict(e2e >= 1.8)}), "
            f"{steady:.2f}x steady ({verdict(steady >= 1.8)})")
    if len(mem) > 1:
        ratio = mem[1][1]["peak_parent"] / mem[0][1]["peak_parent"]
        wratio = mem[1][1]["peak_worker"] / mem[0][1]["peak_worker"]
        say(f"- peak RSS at {args.files_large:,} files within 1.2x of {args.files_small:,}: parent {ratio:.2f}x, "
            f"workers {wratio:.2f}x ({verdict(ratio <= 1.2 and wratio <= 1.2)})")
    if large is not None and bench and any(b["location"] == "disk" for b in bench):
        low = min(b["x_training"] for b in bench if b["location"] == "disk")
        say(f"- batch throughput of every strategy from memmap >= 100x training: lowest {low:,.0f}x ({verdict(low >= 100)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
