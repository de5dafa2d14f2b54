"""`midigen prepare`: folders of MIDI files -> a prepared corpus of memory-mapped token files.

Built for the Lakh MIDI Dataset on a laptop (~176k files, ~5% broken):

* **Parallel.** Worker processes parse and encode; the parent only hands out file paths and
  collects a few numbers per file, so its memory stays flat however many files there are.
* **Nothing stalls or kills the run.** Each file has a time limit: a worker stuck on a
  pathological file (or crashed by one) is killed and replaced, and the file is reported in
  ``failures`` with the reason, like every unreadable file.
* **Resumable and incremental.** Each file's tokens are cached under ``cache/`` by content hash
  and encoding, written atomically. Killed at any moment (even ``kill -9``) and run again, the
  run picks up where it stopped; run on a folder with new files, only those are encoded. The
  output files depend only on the set of inputs, so a resumed run is byte-identical to an
  uninterrupted one.
* **Deterministic split by piece.** Exact duplicates (same bytes) are removed first, then each
  piece goes to train/valid/test by a hash of its content and the seed, so a piece never leaks
  between splits and adding files never moves the old ones.

The output format is described in `midigen.data.corpus`; ``manifest.json`` records the encoding,
vocabulary, what failed and why, duplicates, per-split sizes and the content hash of each source.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from ..encoding import EncodingConfig, Vocab, encode
from ..encoding.vocab import K_NOTE
from ..errors import MidiError, VocabError
from ..midi import Score, find_midi_files
from .corpus import SPLITS

MANIFEST_FORMAT = "midigen.corpus"
MANIFEST_VERSION = 1
STARTUP_LIMIT = 300.0  # seconds a worker may take to start (imports) before it is replaced
CHUNK = 32  # files per message to a worker: amortises inter-process overhead on tiny files


@dataclass
class PrepareResult:
    """What a run did (the manifest says what the corpus *is*; this says how this run went)."""

    out: Path
    manifest: dict
    encoded: int = 0  # files encoded in this run
    cached: int = 0  # files whose tokens were already in the cache
    seconds: float = 0.0
    worker_restarts: int = 0
    notes_per_second: float = 0.0


# ------------------------------------------------------------------ hashing and caching
def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _cache_paths(cache: Path, h: str):
    d = cache / h[:2]
    return d / f"{h}.npy", d / f"{h}.err.json"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)


def _encode_one(path: str, cache: Path, vocab: Vocab):
    """Worker body for one file: (path, hash, n_tokens, n_notes, error, was_cached)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return path, None, 0, 0, f"cannot read file: {exc.strerror or exc}", False
    h = content_hash(data)
    npy, err = _cache_paths(cache, h)
    if npy.exists():
        arr = np.load(npy, mmap_mode="r", allow_pickle=False)
        return path, h, arr.shape[1], int(np.count_nonzero(vocab.kind[arr[0]] == K_NOTE)), None, True
    if err.exists():
        return path, h, 0, 0, json.loads(err.read_text())["error"], True
    try:
        toks = encode(Score.from_bytes(data, path=path), vocab)
    except MidiError as exc:
        _atomic_write_bytes(err, json.dumps({"error": exc.reason}).encode())
        return path, h, 0, 0, exc.reason, False
    except Exception as exc:  # a bug or something unforeseen: report, never stop the run
        reason = f"{type(exc).__name__}: {exc}"
        _atomic_write_bytes(err, json.dumps({"error": reason}).encode())
        return path, h, 0, 0, reason, False
    _save_npy_atomic(npy, np.stack([toks.ids.astype(np.int32), toks.steps]))
    return path, h, len(toks), int(toks.stats["encoded_notes"]), None, False


def _worker_main(conn, cache: str, config: dict) -> None:
    """Worker process: receive lists of paths, send one result per file as soon as it is done."""
    vocab = Vocab(EncodingConfig.from_dict(config))
    cache_dir = Path(cache)
    try:
        conn.send("ready")  # imports done: from now on the parent's clock runs
        while True:
            paths = conn.recv()
            if paths is None:
                return
            for p in paths:
                conn.send(_encode_one(p, cache_dir, vocab))
    except (EOFError, KeyboardInterrupt):
        return


# ------------------------------------------------------------------ the worker pool
class _Worker:
    def __init__(self, ctx, cache: Path, config: dict):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, str(cache), config), daemon=True)
        self.proc.start()
        child.close()
        self.pending: list[str] = []  # files sent and not yet answered, in order
        self.since = time.monotonic()  # when the current file started
        self.ready = False  # start-up (imports) is not counted against the per-file time limit

    def send(self, paths):
        self.pending.extend(paths)
        self.since = time.monotonic()
        self.conn.send(paths)

    def kill(self):
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def _run_pool(paths, cache: Path, vocab: Vocab, workers: int, timeout: float, on_result):
    """Encode ``paths`` in ``workers`` processes; returns the number of workers restarted.

    A file that takes longer than ``timeout`` seconds, or whose worker dies, is recorded as a
    failure (and cached as one, so a rerun does not hit it again); the worker is replaced.
    """
    ctx = mp.get_context("spawn")
    config = vocab.config.to_dict()
    todo = list(reversed(paths))  # pop() from the end = in order
    pool = [_Worker(ctx, cache, config) for _ in range(max(1, workers))]
    restarts = 0

    def feed(w: _Worker):
        if todo and len(w.pending) < CHUNK:
            chunk = [todo.pop() for _ in range(min(CHUNK, len(todo)))]
            w.send(chunk)

    def fail_current(w: _Worker, reason: str):
        path = w.pending.pop(0)
        h = None
        if Path(path).is_file():  # (a FIFO or device would block us as it blocked the worker)
            try:
                h = content_hash(Path(path).read_bytes())
                _atomic_write_bytes(_cache_paths(cache, h)[1], json.dumps({"error": reason}).encode())
            except OSError:
                pass
        on_result((path, h, 0, 0, reason, False))
        todo.extend(reversed(w.pending))  # the rest of its chunk goes back in the queue
        w.pending.clear()

    try:
        for w in pool:
            feed(w)
        while any(w.pending for w in pool):
            ready = wait([w.conn for w in pool if w.pending], timeout=min(1.0, timeout))
            for conn in ready:
                w = next(w for w in pool if w.conn is conn)
                try:
                    while w.pending and conn.poll():  # drain everything this worker has sent
                        result = conn.recv()
                        if isinstance(result, str):  # "ready"
                            w.ready, w.since = True, time.monotonic()
                            continue
                        w.pending.pop(0)
                        w.since = time.monotonic()
                        on_result(result)
                except (EOFError, OSError):
                    w.proc.join(timeout=1)
                    code = w.proc.exitcode
                    w.kill()
                    fail_current(w, f"worker process died while encoding (exit code {code})")
                    pool[pool.index(w)] = _Worker(ctx, cache, config)
                    restarts += 1
                    continue
                if len(w.pending) < CHUNK // 2:
                    feed(w)
            now = time.monotonic()
            for i, w in enumerate(pool):
                if not w.ready and now - w.since > STARTUP_LIMIT:  # a worker that never started
                    w.kill()
                    todo.extend(reversed(w.pending))
                    w.pending.clear()
                    pool[i] = _Worker(ctx, cache, config)
                    restarts += 1
                    if restarts > 10 * len(pool):
                        raise RuntimeError("worker processes fail to start (see their output above)")
                elif w.pending and w.ready and now - w.since > timeout:
                    w.kill()
                    fail_current(w, f"timed out after {timeout:g} s")
                    pool[i] = _Worker(ctx, cache, config)
                    restarts += 1
            for w in pool:
                if not w.pending:
                    feed(w)
    finally:
        for w in pool:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in pool:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()
    return restarts


# ------------------------------------------------------------------ splitting
def split_of(h: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """The split of a piece, from its content hash: stable when other files come and go."""
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{h}".encode(), digest_size=8).digest(), "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


# ------------------------------------------------------------------ the whole job
def prepare(
    sources,
    out,
    encoding: EncodingConfig | None = None,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    workers: int | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    bpe_vocab: int | None = None,
) -> PrepareResult:
    """Encode every MIDI file under ``sources`` into a prepared corpus at ``out``.

    ``workers=0`` encodes in this process (no time limit; for debugging). ``bpe_vocab``: also
    learn an action-aware BPE tokenizer of that size on the *train split only*, save it as
    ``tokenizer.json`` and write every split in BPE ids too (``{split}.bpe.*``). Returns a
    `PrepareResult`; the corpus itself is described by ``out/manifest.json``.
    """
    from tqdm.auto import tqdm

    t0 = time.monotonic()
    if not 0 <= valid_fraction + test_fraction < 1:
        raise ValueError("valid_fraction + test_fraction must lie in [0, 1)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoding = encoding or EncodingConfig()
    vocab = Vocab(encoding)
    vocab_path = out / "vocab.json"
    if vocab_path.exists():
        try:
            Vocab.load(vocab_path, expected=encoding)
        except VocabError as exc:
            raise VocabError(f"{out} holds a corpus prepared differently; use another --out or delete it ({exc})") from None
    vocab.save(vocab_path)
    # The cache is keyed by encoding too, so corpora with other configs can share a folder tree.
    config_key = hashlib.blake2b(json.dumps(encoding.to_dict(), sort_keys=True).encode(), digest_size=6).hexdigest()
    cache = out / "cache" / config_key

    files = find_midi_files(sources, as_str=True)
    if not files:
        raise FileNotFoundError("no .mid/.midi files under: " + ", ".join(map(str, sources)))

    # per file only its content hash (and the few failures): the parent's memory must stay
    # small at Lakh scale; the tokens live in the cache
    results: dict[str, str | None] = dict.fromkeys(files)  # sorted insertion order: deterministic output
    errors: dict[str, str] = {}
    result = PrepareResult(out, {})
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=len(files), desc="prepare", unit="file", disable=not progress, smoothing=0.05)
    state = {"notes": 0, "failed": 0}

    def on_result(r):
        path, h, n_tok, n_notes, error, was_cached = r
        results[path] = h
        if error is not None:
            errors[path] = error
        if was_cached:
            result.cached += 1
        else:
            result.encoded += 1
        state["notes"] += n_notes
        state["failed"] += error is not None
        bar.update(1)
        if bar.n % 64 == 0 or bar.n == len(files):
            dt = max(time.monotonic() - t0, 1e-9)
            bar.set_postfix(notes_per_s=f"{state['notes'] / dt:,.0f}", failed=state["failed"], refresh=False)

    try:
        if n_workers == 0:
            for f in files:
                on_result(_encode_one(f, cache, vocab))
        else:
            result.worker_restarts = _run_pool(files, cache, vocab, n_workers, timeout, on_result)
    finally:
        bar.close()
    result.manifest = _assemble(out, files, results, errors, cache, vocab, valid_fraction, test_fraction, seed, bpe_vocab)
    result.seconds = time.monotonic() - t0
    result.notes_per_second = state["notes"] / max(result.seconds, 1e-9)
    return result


def _write_split(out: Path, prefix: str, pieces, dtype, note_count) -> tuple[list, dict]:
    """Stream (ids, steps) pieces into ``prefix``.tokens.bin/.steps.bin/.index.npy (temp names).

    Returns the (temp, final) renames to do and the split's sizes.
    """
    tok_tmp, step_tmp = out / f"{prefix}.tokens.bin.tmp", out / f"{prefix}.steps.bin.tmp"
    index = []
    offset = notes = 0
    with open(tok_tmp, "wb") as ft, open(step_tmp, "wb") as fs:
        for ids, steps in pieces:
            ft.write(np.asarray(ids).astype(dtype).tobytes())
            fs.write(np.asarray(steps).astype(np.int32).tobytes())
            index.append((offset, len(ids)))
            offset += len(ids)
            notes += note_count(ids)
    index_tmp = out / f"{prefix}.index.npy.tmp"
    with open(index_tmp, "wb") as f:
        np.save(f, np.array(index, np.int64).reshape(-1, 2), allow_pickle=False)
    renames = [(tok_tmp, f"{prefix}.tokens.bin"), (step_tmp, f"{prefix}.steps.bin"), (index_tmp, f"{prefix}.index.npy")]
    return renames, {"files": len(index), "tokens": int(offset), "notes": int(notes)}


def _assemble(out, files, results, errors, cache, vocab, valid_fraction, test_fraction, seed, bpe_vocab=None) -> dict:
    """Write the split files and the manifest from the cache, streaming piece by piece."""
    failures = [{"path": p, "error": errors[p]} for p in sorted(errors)]
    ok = (p for p in files if p not in errors)
    first_of_hash: dict[str, str] = {}
    duplicate_files = []
    for p in ok:  # files are sorted: the first path of each content wins
        kept = first_of_hash.setdefault(results[p], p)
        if kept != p:
            duplicate_files.append({"path": p, "same_as": kept})
    duplicates = len(duplicate_files)
    n_ok = len(files) - len(errors)
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    for h, p in first_of_hash.items():
        by_split[split_of(h, seed, valid_fraction, test_fraction)].append((p, h))

    dtype = np.dtype(vocab.dtype)
    notes_of = vocab.notes_per_token()
    note_count = lambda ids: int(notes_of[np.asarray(ids, np.int64)].sum())  # noqa: E731
    load = lambda h: np.load(_cache_paths(cache, h)[0], allow_pickle=False)  # noqa: E731
    splits, renames = {}, []
    for split, pieces in by_split.items():
        pieces.sort()
        r, splits[split] = _write_split(out, split, ((a[0], a[1]) for a in map(load, (h for _, h in pieces))), dtype, note_count)
        pieces_tmp = out / f"{split}.pieces.json.tmp"
        with open(pieces_tmp, "w") as f:  # json.dump streams: no whole-file string in memory
            json.dump([p for p, _ in pieces], f, indent=0)
        renames += r + [(pieces_tmp, f"{split}.pieces.json")]
    bpe_info = None
    if bpe_vocab:
        from ..encoding.bpe import BPE
        from ..encoding.index import Tokens

        def split_pieces(split):
            for _, h in by_split[split]:
                a = load(h)
                yield a[0], a[1]

        bpe = BPE.train(split_pieces("train"), vocab, bpe_vocab)  # the train split only: no leak
        tok_tmp = out / "tokenizer.json.tmp"
        tok_tmp.write_text(json.dumps(bpe.to_dict()))
        renames.append((tok_tmp, "tokenizer.json"))
        bpe_notes = bpe.notes_per_token()
        bpe_count = lambda ids: int(bpe_notes[np.asarray(ids, np.int64)].sum())  # noqa: E731
        bpe_info = {"file": "tokenizer.json", "vocab_size": len(bpe), "token_dtype": np.dtype(bpe.dtype).name,
                    "trained_on": "train", "splits": {}}
        for split in SPLITS:
            encoded = ((e.ids, e.steps) for e in (bpe.encode(Tokens(i, st)) for i, st in split_pieces(split)))
            r, bpe_info["splits"][split] = _write_split(out, f"{split}.bpe", encoded, np.dtype(bpe.dtype), bpe_count)
            renames += r
    elif (out / "tokenizer.json").exists():  # a rerun without BPE: the old tokenizer no longer fits
        renames.append((None, "tokenizer.json"))

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "encoding": vocab.config.to_dict(),
        "vocab": {"file": "vocab.json", "size": len(vocab)},
        "token_dtype": dtype.name,
        "split": {"valid_fraction": valid_fraction, "test_fraction": test_fraction, "seed": seed},
        "files_ok": n_ok,
        "files_failed": len(failures),
        "failures": failures,
        "duplicates": duplicates,
        "duplicate_files": duplicate_files,
        "splits": splits,
        "sources": results,  # path -> content hash, in sorted order (the dict itself: no copy)
    }
    if bpe_info:
        manifest["bpe"] = bpe_info
    for tmp, name in renames:
        if tmp is None:
            (out / name).unlink()
        else:
            os.replace(tmp, out / name)
    tmp = out / f"manifest.json.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, out / "manifest.json")
    return manifest
