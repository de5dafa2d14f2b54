"""`midigen prepare`: folders of MIDI files -> a prepared corpus of memory-mapped token files.

Built for the Lakh MIDI Dataset on a laptop (~176k files, ~5% broken):

* **Parallel.** Worker processes parse and encode; the parent only hands out file paths and
  collects a few numbers per file, so its memory stays flat however many files there are.
  Workers are forked where that is safe (Linux, no other thread in this process) and spawned
  otherwise; each keeps its malloc heap between files (see `_keep_heap`).
* **Nothing stalls or kills the run.** Each file has a time limit: a worker stuck on a
  pathological file (or crashed by one) is killed and replaced, and the file is reported in
  ``failures`` with the reason, like every unreadable file.
* **Resumable and incremental.** Each file's token ids are cached under ``cache/`` (per
  encoding): appended to its worker's shard file, then recorded by content hash in
  ``journal.tsv``, a line the parent writes only once the tokens are on disk. Killed at any
  moment (even ``kill -9``) and run again, the run picks up where it stopped (a torn last line
  or tokens nobody recorded are simply ignored); run on a folder with new files, only those are
  encoded. The output files depend only on the set of inputs, so a resumed run is
  byte-identical to an uninterrupted one. A few shard files instead of one file per MIDI file:
  at Lakh scale, 176k small files cost as much kernel time as the encoding itself.
* **The split files** are laid out by the parent (every piece's length is in the journal) and
  written part by part by the workers, each part at its own offset; the final names appear by
  atomic rename once everything is written.
* **Deterministic split by piece.** Exact duplicates (same bytes) are removed first, then each
  piece goes to train/valid/test by a hash of its content and the seed, so a piece never leaks
  between splits and adding files never moves the old ones.

The output format is described in `midigen.data.corpus`; ``manifest.json`` records the encoding,
tokenizer, what failed and why, duplicates, per-split sizes and the content hash of each source.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing as mp
import os
import platform
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from ..encoding import EncodingConfig, Tokenizer
from ..encoding.index import steps_of
from ..errors import MidiError, VocabError
from ..midi import Score, find_midi_files
from .corpus import SPLITS

MANIFEST_FORMAT = "midigen.corpus"
MANIFEST_VERSION = 1
STARTUP_LIMIT = 300.0  # seconds a worker may take to start (imports) before it is replaced
CACHE_VERSION = 3  # the cache layout (shards + journal with each piece's last step); older caches are ignored
CHUNK = 32  # files per message to a worker: amortises inter-process overhead on tiny files
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SEND_EVERY = 0.05  # seconds: a worker reports at least this often while it works through a list


@dataclass
class PrepareResult:
    """What a run did (the manifest says what the corpus *is*; this says how this run went)."""

    out: Path
    manifest: dict  # manifest.json without its per-file "sources" table (Lakh-sized: it stays on disk)
    encoded: int = 0  # files encoded in this run
    cached: int = 0  # files whose tokens were already in the cache
    seconds: float = 0.0
    worker_restarts: int = 0
    notes_per_second: float = 0.0


# ------------------------------------------------------------------ hashing and caching
def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class _ShardWriter:
    """A worker's append-only shard: the token ids of the files it encodes, back to back.

    One file per worker process, created on first use, appended with one ``write`` per MIDI file:
    a Lakh run makes a handful of cache files instead of 176k (which cost as much kernel time as
    the encoding itself). Ids only (the vocabulary's dtype, 2 bytes per token): the time steps
    follow from them (`steps_of`). A worker killed mid-write leaves a torn tail nobody points to.
    """

    def __init__(self, folder: Path, dtype):
        self.folder, self.dtype = folder, np.dtype(dtype)
        self.fd, self.name, self.size = None, None, 0

    def append(self, ids) -> tuple[str, int]:
        if self.fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.name = f"{os.getpid()}-{secrets.token_hex(4)}.bin"
            self.fd = os.open(self.folder / self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        view = memoryview(np.ascontiguousarray(ids, self.dtype)).cast("B")
        offset, self.size = self.size, self.size + len(view)
        while view:  # (a regular file takes it in one write; loop for the rare partial write)
            view = view[os.write(self.fd, view):]
        return self.name, offset

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Journal:
    """The cache's table of contents: one line per file ever encoded (by content hash).

    ``hash  shard  offset  tokens  notes  last_step  error`` (tab-separated, error as JSON or
    empty; ``last_step`` lets the parent choose the steps' dtype before any split file exists). Only
    the parent appends, in whole lines, and only after a worker reported the file done, so every
    complete line points at bytes that are on disk; a torn last line (kill -9 mid-write) is cut
    off when the journal is next opened. The first line of a hash wins.
    """

    def __init__(self, folder: Path, dtype):
        self.folder, self.itemsize = folder, np.dtype(dtype).itemsize
        self.path = folder / "journal.tsv"
        self.shards: list[str] = []  # shard names; entries refer to them by position
        self._shard_id: dict[str, int] = {}
        self.errors: list[str] = []
        self._lines: list[str] = []
        self._flushed = time.monotonic()
        self._load()

    def shard_id(self, name: str) -> int:
        if name not in self._shard_id:
            self._shard_id[name] = len(self.shards)
            self.shards.append(name)
        return self._shard_id[name]

    def _load(self) -> None:
        """Read what earlier runs cached: sorted arrays, so a Lakh-sized journal stays small."""
        hashes, rows = [], []
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):  # a torn last line: cut it so the next line starts clean
                os.truncate(self.path, complete)
            sizes = {}
            seen = set()
            for line in data[:complete].decode("utf-8", "replace").splitlines():
                parts = line.split("\t")
                if len(parts) != 7 or len(parts[0]) != 32 or parts[0] in seen:
                    continue
                h, shard, offset, n_tok, n_notes, last_step, error = parts
                try:
                    offset, n_tok, n_notes, last_step = int(offset), int(n_tok), int(n_notes), int(last_step)
                    if error:
                        self.errors.append(json.loads(error))
                        row = (-1, 0, 0, 0, 0, len(self.errors) - 1)
                    else:
                        if shard not in sizes:
                            p = self.folder / "shards" / shard
                            sizes[shard] = p.stat().st_size if p.is_file() else -1
                        if offset + n_tok * self.itemsize > sizes[shard]:
                            continue  # its shard is gone or short: encode that file again
                        row = (self.shard_id(shard), offset, n_tok, n_notes, last_step, -1)
                except ValueError:
                    continue
                seen.add(h)
                hashes.append(h)
                rows.append(row)
        order = np.argsort(np.array(hashes, "S32"), kind="stable")
        self.known = np.array(hashes, "S32")[order]
        table = np.array(rows, np.int64).reshape(-1, 6)[order]
        self.k_shard, self.k_offset, self.k_tokens, self.k_notes, self.k_last, self.k_error = table.T.copy()

    def lookup(self, h: str):
        """(shard id, offset, tokens, notes, last step, error or None) of a cached hash, or None."""
        i = int(np.searchsorted(self.known, h.encode()))
        if i == len(self.known) or self.known[i] != h.encode():
            return None
        e = int(self.k_error[i])
        return (int(self.k_shard[i]), int(self.k_offset[i]), int(self.k_tokens[i]), int(self.k_notes[i]),
                int(self.k_last[i]), self.errors[e] if e >= 0 else None)

    def add(self, h: str, shard: str | None, offset: int, n_tok: int, n_notes: int, last_step: int,
            error: str | None) -> None:
        err = json.dumps(error) if error is not None else ""
        self._lines.append(f"{h}\t{shard or '-'}\t{offset}\t{n_tok}\t{n_notes}\t{last_step}\t{err}\n")
        if len(self._lines) >= 256 or time.monotonic() - self._flushed > 0.1:
            self.flush()

    def flush(self) -> None:
        """Append the buffered lines with one write: lost on kill -9 at worst (re-encoded then)."""
        if self._lines:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write("".join(self._lines).encode())
            self._lines.clear()
        self._flushed = time.monotonic()


def _is_known(known: np.ndarray, h: str) -> bool:
    i = int(np.searchsorted(known, h.encode()))
    return i < len(known) and known[i] == h.encode()


def _encode_one(path: str, tokenizer: Tokenizer, writer: _ShardWriter, known: np.ndarray):
    """Worker body for one file: (path, hash, n_tokens, n_notes, error, was_cached, shard, offset,
    last_step).

    A file whose content is already in the cache is only hashed; the parent has its entry.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return path, None, 0, 0, f"cannot read file: {exc.strerror or exc}", False, None, 0, 0
    h = content_hash(data)
    if _is_known(known, h):
        return path, h, 0, 0, None, True, None, 0, 0
    try:
        toks = tokenizer.encode_base(Score.from_bytes(data, path=path))
    except MidiError as exc:
        return path, h, 0, 0, exc.reason, False, None, 0, 0
    except Exception as exc:  # a bug or something unforeseen: report, never stop the run
        return path, h, 0, 0, f"{type(exc).__name__}: {exc}", False, None, 0, 0
    shard, offset = writer.append(toks.ids)
    # (steps never go back, so the last one is the largest: it decides the steps' dtype)
    return path, h, len(toks), int(toks.stats["encoded_notes"]), None, False, shard, offset, int(toks.steps[-1])


def _keep_heap() -> None:
    """Let a worker keep the memory it frees in its malloc heap instead of handing it back.

    Each file's numpy temporaries (100 kB to 10 MB) would otherwise be fresh ``mmap``s, or a heap
    trimmed right after, which the kernel zeroes page by page again for every file. Measured at
    20k files with 2 workers (2-core Xeon): 0.95-1.0M minor page faults and 2.0-2.1 s of kernel
    time without these settings, 12k faults and 0.85 s with them; 9.7 -> 9.0 s end to end. A
    worker's heap then settles at its largest file's working set (tens of MB) and is reused.
    glibc only; a no-op elsewhere.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # (glibc's malloc.h)
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # blocks under 32 MB come from the heap, not mmap
    mallopt(M_TRIM_THRESHOLD, 128 << 20)  # free heap is kept up to 128 MB
    mallopt(M_TOP_PAD, 16 << 20)  # and grown 16 MB at a time


def _worker_main(conn, now, shards: str, config: dict, known: bytes, inherited=()) -> None:
    """Worker process: receive lists of paths, send back lists of results.

    Results go back in batches (at the end of each list, or every `SEND_EVERY` seconds), so the
    parent wakes up a few dozen times a second rather than once per file: on a 2-core laptop its
    per-message work would otherwise take CPU from the workers. ``now`` (shared memory) tells the
    parent which file is being encoded and since when, so a stuck file is found without a message.
    ``inherited``: the parent's ends of the pipes, which a forked worker holds copies of.
    """
    for c in inherited:  # else a worker whose parent was killed would wait forever on a pipe it
        c.close()  # holds open itself (seen: orphans blocked in recv after kill -9 of the parent)
    _keep_heap()
    tokenizer = Tokenizer(EncodingConfig.from_dict(config))
    writer = _ShardWriter(Path(shards), tokenizer.dtype)
    known_hashes = np.frombuffer(known, "S32")
    try:
        conn.send("ready")  # imports done: from now on the parent's clock runs
        while True:
            msg = conn.recv()
            if msg is None:
                return
            if isinstance(msg, tuple):  # a part of the split files to write (after encoding)
                conn.send(("written", _write_part(tokenizer, Path(shards), *msg)))
                continue
            done, sent = [], time.monotonic()
            for i, p in msg:
                now[0] += 1  # files started so far
                now[1] = time.monotonic()
                done.append((i, *_encode_one(p, tokenizer, writer, known_hashes)[1:]))
                now[1] = 0.0  # idle
                if time.monotonic() - sent > SEND_EVERY:
                    conn.send(done)
                    done, sent = [], time.monotonic()
            if done:  # (never an empty message: the parent may have stopped listening for results)
                conn.send(done)
    except (EOFError, ConnectionError, KeyboardInterrupt):  # the parent is gone or was interrupted:
        return  # quietly (no BrokenPipeError traceback from every worker)
    finally:
        writer.close()


# ------------------------------------------------------------------ the worker pool
def _start_method(requested: str | None) -> str:
    """How to start a worker: ``fork`` where it is safe, else ``spawn``.

    Forking takes milliseconds; spawning starts a fresh interpreter that imports numpy and
    midigen (~0.1 s a worker, a tenth of a 2k-file run). Forking is safe on Linux when this
    process runs no other Python thread (the CLI, a script). With other threads (a Jupyter
    kernel, a tqdm monitor, the user's own) a lock held by one of them at the fork would stay
    locked forever in the child, so then workers are spawned.
    """
    if requested is not None:
        if requested not in ("fork", "spawn"):
            raise ValueError(f"start_method must be 'fork', 'spawn' or None, got {requested!r}")
        return requested
    return "fork" if sys.platform.startswith("linux") and threading.active_count() == 1 else "spawn"


class _Worker:
    def __init__(self, ctx, args, inherited=()):
        self.conn, child = ctx.Pipe()
        self.now = ctx.RawArray("d", 2)  # [files started, when the current one started (0: idle)]
        # A forked worker is handed the parent's pipe ends it inherits (its own, the other
        # workers') to close them; a spawned one inherits nothing (and they could not be pickled).
        inherited = (self.conn, *inherited) if ctx.get_start_method() == "fork" else ()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.now, *args, inherited), daemon=True)
        self.proc.start()
        child.close()
        self.pending: list[int] = []  # files sent and not yet answered, in order
        self.answered = 0  # results received
        self.since = time.monotonic()  # when it was started
        self.ready = False  # start-up (imports) is not counted against the per-file time limit

    def send(self, message, files):
        self.pending.extend(files)
        self.conn.send(message)

    def current(self) -> int:
        """Position in ``pending`` of the file the worker is encoding (files before it are done,
        their results not yet sent)."""
        return min(max(int(self.now[0]) - self.answered - 1, 0), len(self.pending) - 1)

    def busy_for(self, now: float) -> float:
        """Seconds the worker has spent on its current file (0 when idle).

        The shared value is read once: the worker sets it to 0 when a file is done, and reading
        it twice (test, then subtract) could compute ``now - 0``, a file 'busy' for hours.
        """
        since = self.now[1]
        return now - since if since else 0.0

    def kill(self):
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class _Pool:
    """Worker processes, started before the file scan so their start-up overlaps it."""

    def __init__(self, workers: int, shards: Path, tokenizer: Tokenizer, known: np.ndarray, start_method: str | None = None):
        _start_method(start_method)  # (an unknown method fails here, before any process starts)
        self.start_method = start_method
        self.args = (str(shards), tokenizer.config.to_dict(), known.tobytes())
        self.workers: list[_Worker] = []
        for _ in range(max(1, workers)):
            self.workers.append(self._start())
        self.restarts = 0
        self.start_failures = 0  # workers that died before they were ready

    def _start(self) -> _Worker:
        # decided at each start: a replacement may come after a thread appeared (tqdm's monitor)
        ctx = mp.get_context(_start_method(self.start_method))
        # One thread per worker: numpy's BLAS would otherwise start (and spin) a pool of threads
        # in every worker, competing with the other workers for the cores.
        saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
        try:
            return _Worker(ctx, self.args, [w.conn for w in self.workers if not w.conn.closed])
        finally:
            for v, value in saved.items():
                if value is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = value

    def replace(self, i: int) -> None:
        self.workers[i] = self._start()
        self.restarts += 1

    def _start_failed(self, i: int) -> None:
        """Worker ``i`` died or hung before it was ready: no file is to blame; retry a few times."""
        self.start_failures += 1
        if self.start_failures >= 10 * len(self.workers):
            raise RuntimeError(
                f"worker processes keep dying while they start ({self.start_failures} times; their "
                "error is printed above). A spawned worker imports your main module again: a script "
                "that calls prepare() must do so under `if __name__ == \"__main__\":`. Or pass "
                "workers=0 to encode in this process.")
        self.replace(i)

    def run(self, paths, timeout: float, on_result, on_failure) -> int:
        """Encode ``paths``; returns the number of workers restarted.

        Files travel as (index, path) and come back as ``on_result((index, hash, n_tokens,
        n_notes, error, was_cached, shard, offset, last_step))``. A file that takes longer than
        ``timeout`` seconds, or whose worker dies, goes to ``on_failure(index, reason)``; the
        worker is replaced, and the files it had finished but not reported yet and the rest of
        its lists are queued again. A worker that dies before it is ready blames no file.
        """
        pool = self.workers
        again: list[int] = []  # files to send again (a replaced worker's), before the rest
        fresh = iter(range(len(paths)))  # (no list of 176k ints: the parent stays small)
        left = [len(paths)]  # files neither sent nor requeued

        def feed(w: _Worker):
            # Guided scheduling: lists of CHUNK files, shrinking as the run nears its end (and the
            # queue with them), so no worker is left with a long list while the other one idles.
            while again or left[0]:
                size = max(1, min(CHUNK, (len(again) + left[0]) // (2 * len(pool))))
                if len(w.pending) >= 2 * size:  # two lists queued: never idle
                    return
                chunk = [again.pop() for _ in range(min(size, len(again)))]
                k = min(size - len(chunk), left[0])
                chunk += [next(fresh) for _ in range(k)]
                left[0] -= k
                w.send([(i, paths[i]) for i in chunk], chunk)

        def fail_current(w: _Worker, reason: str):
            k = w.current()
            on_failure(w.pending[k], reason)
            again.extend(reversed(w.pending[:k] + w.pending[k + 1 :]))
            w.pending.clear()

        def requeue_all(w: _Worker):
            again.extend(reversed(w.pending))
            w.pending.clear()

        for w in pool:
            feed(w)
        while any(w.pending for w in pool):
            ready = wait([w.conn for w in pool if w.pending], timeout=min(1.0, timeout))
            for conn in ready:
                i, w = next((i, w) for i, w in enumerate(pool) if w.conn is conn)
                try:
                    while w.pending and conn.poll():  # drain everything this worker has sent
                        results = conn.recv()
                        if isinstance(results, str):  # "ready"
                            w.ready = True
                            continue
                        del w.pending[: len(results)]
                        w.answered += len(results)
                        for r in results:
                            on_result(r)
                except (EOFError, OSError):
                    w.proc.join(timeout=1)
                    code = w.proc.exitcode
                    w.kill()
                    if w.ready:
                        fail_current(w, f"worker process died while encoding (exit code {code})")
                        self.replace(i)
                    else:  # died starting up (imports; a script without the __main__ guard)
                        requeue_all(w)
                        self._start_failed(i)
                    continue
                feed(w)
            now = time.monotonic()
            for i, w in enumerate(pool):
                if not w.ready and now - w.since > STARTUP_LIMIT:  # a worker that never started
                    w.kill()
                    requeue_all(w)
                    self._start_failed(i)
                elif w.pending and w.ready and w.busy_for(now) > timeout:
                    w.kill()
                    fail_current(w, f"timed out after {timeout:g} s")
                    self.replace(i)
            for w in pool:
                feed(w)
        return self.restarts

    def map_parts(self, parts) -> list:
        """`_write_part` over ``parts`` in the workers (one part in flight per worker)."""
        results = [None] * len(parts)
        todo = list(reversed(range(len(parts))))
        busy: dict = {}  # connection -> (worker, part index)
        for w in self.workers:
            if todo:
                k = todo.pop()
                w.conn.send(parts[k])
                busy[w.conn] = (w, k)
        while busy:
            for conn in wait(list(busy)):
                w, k = busy.pop(conn)
                try:
                    msg = conn.recv()
                    while not (isinstance(msg, tuple) and msg[0] == "written"):  # a late "ready"
                        msg = conn.recv()
                except (EOFError, OSError):
                    raise RuntimeError(f"a worker died while writing the split files (exit code "
                                       f"{w.proc.exitcode}); run prepare again: the cache keeps every encoded file") from None
                results[k] = msg[1]
                if todo:
                    k = todo.pop()
                    conn.send(parts[k])
                    busy[conn] = (w, k)
        return results

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in self.workers:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()


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
    start_method: str | None = None,
) -> PrepareResult:
    """Encode every MIDI file under ``sources`` into a prepared corpus at ``out``.

    ``workers=0`` encodes in this process (no time limit; for debugging). ``start_method``:
    how worker processes start, ``"fork"`` or ``"spawn"``; by default forked on Linux when this
    process runs no other thread, else spawned (the output is the same). ``bpe_vocab``: also
    learn an action-aware BPE tokenizer of that size on the *train split only*, save it as
    ``tokenizer.json`` and write every split in BPE ids too (``{split}.bpe.*``). Returns a
    `PrepareResult`; the corpus itself is described by ``out/manifest.json``.
    """
    if progress:
        from tqdm.auto import tqdm
    else:  # (importing tqdm.auto takes ~30 ms, 3% of a 2,000-file run)
        tqdm = _NoBar

    t0 = time.monotonic()
    if not 0 <= valid_fraction + test_fraction < 1:
        raise ValueError("valid_fraction + test_fraction must lie in [0, 1)")
    missing = [s for s in map(str, sources) if not os.path.exists(s)]
    if missing:  # (a typo in a folder name would otherwise make a corpus of one failure)
        raise FileNotFoundError("no such file or folder: " + ", ".join(missing))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoding = encoding or EncodingConfig()
    tokenizer = Tokenizer(encoding)  # the base tokenizer (BPE merges, if any, come at the end)
    if (out / "tokenizer.json").exists() or (out / "vocab.json").exists():  # (vocab.json: the old layout)
        try:
            Tokenizer.load(out, expected=encoding)
        except VocabError as exc:
            raise VocabError(f"{out} holds a corpus prepared differently; use another --out or delete it ({exc})") from None
    # The cache is keyed by encoding too, so corpora with other configs can share a folder tree.
    config_key = hashlib.blake2b(json.dumps(encoding.to_dict(), sort_keys=True).encode(), digest_size=6).hexdigest()
    cache = out / "cache" / f"v{CACHE_VERSION}-{config_key}"
    journal = _Journal(cache, tokenizer.dtype)
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    pool = _Pool(n_workers, cache / "shards", tokenizer, journal.known, start_method) if n_workers > 0 else None

    try:
        files = find_midi_files(sources, as_str=True)
        if not files:
            raise FileNotFoundError("no .mid/.midi files under: " + ", ".join(map(str, sources)))
        # Per file a few numbers in arrays, not Python objects: the parent's memory must stay
        # small at Lakh scale (the tokens themselves stay in the cache until the split files).
        state = _FileTable(files)
        errors = state.errors
        result = PrepareResult(out, {})
        bar = tqdm(total=len(files), desc="prepare", unit="file", disable=not progress, smoothing=0.05)
        counts = {"notes": 0, "failed": 0}

        def record(i, h, shard, offset, n_tok, n_notes, last_step, error, was_cached):
            if h is not None:
                state.hashes[i] = h.encode()
            if error is not None:
                errors[i] = error
            else:
                state.shard[i], state.offset[i], state.tokens[i] = shard, offset, n_tok
                state.notes[i], state.last_step[i] = n_notes, last_step
            result.cached += was_cached
            result.encoded += not was_cached
            counts["notes"] += n_notes
            counts["failed"] += error is not None
            bar.update(1)
            if bar.n % 64 == 0 or bar.n == len(files):
                dt = max(time.monotonic() - t0, 1e-9)
                bar.set_postfix(notes_per_s=f"{counts['notes'] / dt:,.0f}", failed=counts["failed"], refresh=False)

        def on_result(r):
            i, h, n_tok, n_notes, error, was_cached, shard, offset, last_step = r
            if was_cached:
                shard_id, offset, n_tok, n_notes, last_step, error = journal.lookup(h)
            else:
                if h is not None:  # (None: unreadable, nothing to cache)
                    journal.add(h, shard, offset, n_tok, n_notes, last_step, error)
                shard_id = journal.shard_id(shard) if shard is not None else -1
            record(i, h, shard_id, offset, n_tok, n_notes, last_step, error, was_cached)

        def on_failure(i, reason):  # timed out or crashed its worker: cached as a failure
            path, h = files[i], None
            if Path(path).is_file():  # (a FIFO or device would block us as it blocked the worker)
                try:
                    h = content_hash(Path(path).read_bytes())
                    journal.add(h, None, 0, 0, 0, 0, reason)
                except OSError:
                    pass
            record(i, h, -1, 0, 0, 0, 0, reason, False)

        try:
            if pool is None:
                writer = _ShardWriter(cache / "shards", tokenizer.dtype)
                try:
                    for i, f in enumerate(files):
                        on_result((i, *_encode_one(f, tokenizer, writer, journal.known)[1:]))
                finally:
                    writer.close()
            else:
                result.worker_restarts = pool.run(files, timeout, on_result, on_failure)
        finally:
            journal.flush()  # nothing encoded is lost, even on Ctrl-C
            bar.close()
        result.manifest = _assemble(out, state, journal, cache, tokenizer, valid_fraction, test_fraction, seed, bpe_vocab, pool)
    finally:
        if pool is not None:
            pool.close()
    result.seconds = time.monotonic() - t0
    result.notes_per_second = counts["notes"] / max(result.seconds, 1e-9)
    return result


class _NoBar:
    """What prepare() uses of a tqdm bar, doing nothing but count (``progress=False``)."""

    def __init__(self, *args, **kwargs):
        self.n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


class _FileTable:
    """What the parent knows of each source file, in arrays parallel to the sorted file list."""

    def __init__(self, files: list[str]):
        n = len(files)
        self.files = files
        self.hashes = np.zeros(n, "S32")  # content hash (hex); empty if the file was unreadable
        self.shard = np.full(n, -1, np.int32)  # where its tokens are: shard id (-1: failed) ...
        self.offset = np.zeros(n, np.int64)  # ... byte offset in the shard ...
        self.tokens = np.zeros(n, np.int64)  # ... and number of tokens
        self.notes = np.zeros(n, np.int64)  # notes encoded
        self.last_step = np.zeros(n, np.int64)  # time step of its last token (decides the steps' dtype)
        self.errors: dict[int, str] = {}  # file index -> why it failed


class _ShardReader:
    def __init__(self, folder: Path, names: list[str], dtype):
        self.folder, self.names, self.dtype = folder, names, np.dtype(dtype)
        self.fds: dict[int, int] = {}

    def read(self, shard: int, offset: int, n: int) -> np.ndarray:
        if shard not in self.fds:
            self.fds[shard] = os.open(self.folder / self.names[shard], os.O_RDONLY)
        data = os.pread(self.fds[shard], n * self.dtype.itemsize, offset)
        if len(data) != n * self.dtype.itemsize:
            raise OSError(f"{self.folder / self.names[shard]}: cache shard is shorter than its journal says; "
                          "delete the cache folder and run again")
        return np.frombuffer(data, self.dtype)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


PART_TOKENS = 1 << 20  # tokens per part of a split file written by one worker (small: balanced)
WRITE_TOKENS = 1 << 18  # tokens per write: few syscalls, small bounded memory


def _write_part(tokenizer: Tokenizer, shards: Path, tok_path: str, step_path: str, steps_dtype: str, start: int, names,
                shard, offset, n_tokens) -> int:
    """Copy pieces from the cache into the split files: piece ``j`` is ``n_tokens[j]`` ids at byte
    ``offset[j]`` of the shard file ``names[shard[j]]``.

    They land back to back from token ``start`` of the (already sized) files ``tok_path`` and
    ``step_path``; the steps are rebuilt from the ids and stored as ``steps_dtype``. Returns the
    number of tokens written. Runs in the workers, so writing a Lakh-sized split takes all
    cores, not one.
    """
    dtype, sdtype = np.dtype(tokenizer.dtype), np.dtype(steps_dtype)
    reader = _ShardReader(shards, names, dtype)
    ft, fs = os.open(tok_path, os.O_WRONLY), os.open(step_path, os.O_WRONLY)
    chunk, at = [], start

    def flush():  # one write per file for ~WRITE_TOKENS tokens; steps over the whole chunk at once
        nonlocal at
        ids = np.concatenate(chunk)
        steps = steps_of(ids, tokenizer, np.cumsum([0] + [len(c) for c in chunk[:-1]]))
        _pwrite_all(ft, ids, at * dtype.itemsize)
        _pwrite_all(fs, steps.astype(sdtype, copy=False), at * sdtype.itemsize)
        at += len(ids)
        chunk.clear()

    try:
        size = 0
        for sh, off, n in zip(shard.tolist(), offset.tolist(), n_tokens.tolist()):
            chunk.append(reader.read(sh, off, n))
            size += n
            if size >= WRITE_TOKENS:
                flush()
                size = 0
        if chunk:
            flush()
    finally:
        reader.close()
        os.close(ft)
        os.close(fs)
    return at - start


def _pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(arr)).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_split(out: Path, prefix: str, pieces, dtype, notes_of, steps_dtype) -> tuple[list, dict]:
    """Stream (ids, steps) pieces into ``prefix``.tokens.bin/.steps.bin/.index.npy (temp names).

    Returns the (temp, final) renames to do and the split's sizes. (The BPE files; the base
    files are written in parts by the workers, `_write_part`.)
    """
    tok_tmp, step_tmp = out / f"{prefix}.tokens.bin.tmp", out / f"{prefix}.steps.bin.tmp"
    lengths = []
    notes = 0
    with open(tok_tmp, "wb") as ft, open(step_tmp, "wb") as fs:
        for ids, steps in pieces:
            ft.write(np.asarray(ids).astype(dtype).tobytes())
            fs.write(np.asarray(steps).astype(steps_dtype).tobytes())
            lengths.append(len(ids))
            notes += int(notes_of[np.asarray(ids, np.int64)].sum())
    lengths = np.array(lengths, np.int64)
    index_tmp = out / f"{prefix}.index.npy.tmp"
    with open(index_tmp, "wb") as f:
        np.save(f, np.stack([np.cumsum(lengths) - lengths, lengths], axis=1), allow_pickle=False)
    renames = [(tok_tmp, f"{prefix}.tokens.bin"), (step_tmp, f"{prefix}.steps.bin"), (index_tmp, f"{prefix}.index.npy")]
    return renames, {"files": len(lengths), "tokens": int(lengths.sum()), "notes": int(notes)}


def _assemble(out, state: _FileTable, journal: _Journal, cache, tokenizer, valid_fraction, test_fraction, seed,
              bpe_vocab=None, pool: _Pool | None = None) -> dict:
    """Write the split files and the manifest from the cache: duplicates out, pieces to their
    splits, the split files written in parts (by the workers when there are any), then every
    final name by atomic rename and the manifest last."""
    files = state.files
    failures = [{"path": files[i], "error": state.errors[i]} for i in sorted(state.errors)]
    ok = np.flatnonzero(state.shard >= 0)
    # exact duplicates: files are sorted, so the first path of each content wins
    _, first, inverse = np.unique(state.hashes[ok], return_index=True, return_inverse=True)
    kept = np.sort(ok[first])
    same_as = ok[first[inverse.ravel()]]
    dup = np.flatnonzero(ok != same_as)
    duplicate_files = [{"path": files[i], "same_as": files[j]} for i, j in zip(ok[dup], same_as[dup])]
    where = np.array([SPLITS.index(split_of(h.decode(), seed, valid_fraction, test_fraction)) for h in state.hashes[kept]],
                     np.int8).reshape(-1)
    by_split = {s: kept[where == k] for k, s in enumerate(SPLITS)}  # file indices, in path order

    dtype = np.dtype(tokenizer.dtype)
    # Steps as uint16 (2 bytes a token instead of 4) while every piece is shorter than 65,536
    # steps (over two hours at 4 steps a beat and 120 bpm), else int32.
    sdtype = np.dtype(np.uint16 if state.last_step[kept].max(initial=0) <= np.iinfo(np.uint16).max else np.int32)
    reader = _ShardReader(cache / "shards", journal.shards, dtype)

    def split_ids(split):
        for i in by_split[split]:
            yield reader.read(state.shard[i], state.offset[i], state.tokens[i])

    # The split files: the parent lays them out (sizes, offsets: known from the journal), the
    # workers copy the pieces in, part by part.
    splits, renames, parts = {}, [], []
    for split in SPLITS:
        idx = np.array(by_split[split], np.int64)
        lengths = state.tokens[idx]
        starts = np.cumsum(lengths) - lengths
        tok_tmp, step_tmp = out / f"{split}.tokens.bin.tmp", out / f"{split}.steps.bin.tmp"
        for path, size in ((tok_tmp, int(lengths.sum()) * dtype.itemsize), (step_tmp, int(lengths.sum()) * sdtype.itemsize)):
            with open(path, "wb") as f:
                f.truncate(size)
        index_tmp = out / f"{split}.index.npy.tmp"
        with open(index_tmp, "wb") as f:
            np.save(f, np.stack([starts, lengths], axis=1).reshape(-1, 2), allow_pickle=False)
        cut = np.searchsorted(starts, np.arange(0, int(lengths.sum()), PART_TOKENS), side="left")
        for a, b in zip(cut, np.append(cut[1:], len(idx))):
            if b > a:
                part = idx[a:b]
                parts.append((str(tok_tmp), str(step_tmp), sdtype.name, int(starts[a]), journal.shards,
                              state.shard[part], state.offset[part], state.tokens[part]))
        splits[split] = {"files": len(idx), "tokens": int(lengths.sum()), "notes": int(state.notes[idx].sum())}
        renames += [(tok_tmp, f"{split}.tokens.bin"), (step_tmp, f"{split}.steps.bin"), (index_tmp, f"{split}.index.npy")]
    if pool is not None:
        written = pool.map_parts(parts)
    else:
        written = [_write_part(tokenizer, cache / "shards", *part) for part in parts]
    if sum(written) != sum(s["tokens"] for s in splits.values()):  # (never seen; never rename a short file)
        raise RuntimeError(f"{out}: the split files came out incomplete; run prepare again")

    try:
        for split in SPLITS:
            pieces_tmp = out / f"{split}.pieces.json.tmp"
            with open(pieces_tmp, "w") as f:  # json.dump streams: no whole-file string in memory
                json.dump([files[i] for i in by_split[split]], f, indent=0)
            renames.append((pieces_tmp, f"{split}.pieces.json"))
        bpe_info = None
        final = tokenizer  # what the corpus's ids mean: the base tokenizer, or one with merges
        if bpe_vocab:
            from ..encoding.index import Tokens

            def split_pieces(split):
                for ids in split_ids(split):
                    yield ids, steps_of(ids, tokenizer)

            final = tokenizer.train_bpe(split_pieces("train"), bpe_vocab)  # the train split only: no leak
            bpe_info = {"file": "tokenizer.json", "vocab_size": len(final), "token_dtype": np.dtype(final.dtype).name,
                        "trained_on": "train", "splits": {}}
            for split in SPLITS:
                encoded = ((e.ids, e.steps) for e in (final.apply_bpe(Tokens(i, st)) for i, st in split_pieces(split)))
                r, bpe_info["splits"][split] = _write_split(out, f"{split}.bpe", encoded, np.dtype(final.dtype),
                                                            final.notes_per_token(), sdtype)
                renames += r
        tok_tmp = final.save(out / "tokenizer.tmp.json")  # renamed into place with the split files
        renames.append((tok_tmp, "tokenizer.json"))
        if (out / "vocab.json").exists():  # a corpus of the old layout, prepared again: now in tokenizer.json
            renames.append((None, "vocab.json"))
    finally:
        reader.close()

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "encoding": tokenizer.config.to_dict(),
        "tokenizer": {"file": "tokenizer.json", "size": len(final), "hash": final.hash},
        "token_dtype": dtype.name,
        "steps_dtype": sdtype.name,
        "split": {"valid_fraction": valid_fraction, "test_fraction": test_fraction, "seed": seed},
        "files_ok": len(files) - len(failures),
        "files_failed": len(failures),
        "failures": failures,
        "duplicates": len(duplicate_files),
        "duplicate_files": duplicate_files,
        "splits": splits,
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
        # "sources" (path -> content hash, sorted by path) is written line by line from the
        # arrays: at Lakh scale a dict of 176k strings would be the parent's largest object.
        head = json.dumps(manifest, indent=1)
        f.write(head[:-2] + ',\n "sources": {')
        for i, path in enumerate(files):
            h = state.hashes[i].decode() or None
            f.write(("," if i else "") + "\n  " + json.dumps(path) + ": " + json.dumps(h))
        f.write("\n }\n}")
    os.replace(tmp, out / "manifest.json")
    return manifest  # (without "sources": read manifest.json for the per-file table)
