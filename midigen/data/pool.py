"""The worker pool of `prepare`: processes that encode files and write parts of the split files.

Workers are forked where that is safe (Linux, no other thread in this process) and spawned
otherwise. The parent only hands out file paths and collects a few numbers per file, so its
memory stays flat however many files there are. Each file has a time limit: a worker stuck on a
pathological file (or crashed by one) is killed and replaced, and the file goes to
``on_failure`` with the reason. What a worker runs is in `midigen.data.worker`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..encoding import Tokenizer
from .assemble import Part, Written
from .worker import worker_main

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext

    from .worker import FileResult

STARTUP_LIMIT = 300.0  # seconds a worker may take to start (imports) before it is replaced
CHUNK = 32  # files per message to a worker: amortises inter-process overhead on tiny files
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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


class Worker:
    """A worker process as the parent sees it: its pipe, its shared clock, the files it holds."""

    def __init__(self, ctx: BaseContext, args: tuple, inherited: Iterable[Connection] = ()):
        self.conn, child = ctx.Pipe()
        self.now = ctx.RawArray("d", 2)  # [files started, when the current one started (0: idle)]
        # A forked worker is handed the parent's pipe ends it inherits (its own, the other
        # workers') to close them; a spawned one inherits nothing (and they could not be pickled).
        inherited = (self.conn, *inherited) if ctx.get_start_method() == "fork" else ()
        self.proc = ctx.Process(target=worker_main, args=(child, self.now, *args, inherited), daemon=True)
        self.proc.start()
        child.close()
        self.pending: list[int] = []  # files sent and not yet answered, in order
        self.answered = 0  # results received
        self.since = time.monotonic()  # when it was started
        self.ready = False  # start-up (imports) is not counted against the per-file time limit

    def send(self, message: object, files: list[int]) -> None:
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

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class Pool:
    """Worker processes, started before the file scan so their start-up overlaps it."""

    def __init__(self, workers: int, shards: Path, tokenizer: Tokenizer, known: np.ndarray,
                 start_method: str | None = None):
        _start_method(start_method)  # (an unknown method fails here, before any process starts)
        self.start_method = start_method
        self.args = (str(shards), tokenizer.config.to_dict(), known.tobytes())
        self.workers: list[Worker] = []
        for _ in range(max(1, workers)):
            self.workers.append(self._start())
        self.restarts = 0
        self.start_failures = 0  # workers that died before they were ready

    def _start(self) -> Worker:
        # decided at each start: a replacement may come after a thread appeared (tqdm's monitor)
        ctx = mp.get_context(_start_method(self.start_method))
        # One thread per worker: numpy's BLAS would otherwise start (and spin) a pool of threads
        # in every worker, competing with the other workers for the cores.
        saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
        try:
            return Worker(ctx, self.args, [w.conn for w in self.workers if not w.conn.closed])
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

    def run(self, paths: Sequence[str], timeout: float, on_result: Callable[[FileResult], None],
            on_failure: Callable[[int, str], None]) -> int:
        """Encode ``paths``; returns the number of workers restarted.

        Files travel as (index, path) and come back as ``on_result(FileResult)``. A file that
        takes longer than ``timeout`` seconds, or whose worker dies, goes to ``on_failure(index,
        reason)``; the worker is replaced, and the files it had finished but not reported yet and
        the rest of its lists are queued again. A worker that dies before it is ready blames no
        file.
        """
        run = _Run(self, paths, timeout, on_result, on_failure)
        for w in self.workers:
            run.feed(w)
        while any(w.pending for w in self.workers):
            ready = wait([w.conn for w in self.workers if w.pending], timeout=min(1.0, timeout))
            for conn in ready:
                i, w = next((i, w) for i, w in enumerate(self.workers) if w.conn is conn)
                if run.receive(i, w):
                    run.feed(w)
            run.check_clocks(time.monotonic())
            for w in self.workers:
                run.feed(w)
        return self.restarts

    def map_parts(self, parts: list[Part]) -> list:
        """`write_part` over ``parts`` in the workers (one part in flight per worker)."""
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
                    while not isinstance(msg, Written):  # a late "ready"
                        msg = conn.recv()
                except (EOFError, OSError):
                    raise RuntimeError(f"a worker died while writing the split files (exit code {w.proc.exitcode}); "
                                       "run prepare again: the cache keeps every encoded file") from None
                results[k] = msg.tokens
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


class _Run:
    """One `Pool.run`: the files still to send, and what becomes of each worker's messages."""

    def __init__(self, pool: Pool, paths: Sequence[str], timeout: float, on_result: Callable[[FileResult], None],
                 on_failure: Callable[[int, str], None]):
        self.pool, self.paths, self.timeout = pool, paths, timeout
        self.on_result, self.on_failure = on_result, on_failure
        self.again: list[int] = []  # files to send again (a replaced worker's), before the rest
        self.fresh = iter(range(len(paths)))  # (no list of 176k ints: the parent stays small)
        self.left = len(paths)  # files neither sent nor requeued

    def feed(self, w: Worker) -> None:
        # Guided scheduling: lists of CHUNK files, shrinking as the run nears its end (and the
        # queue with them), so no worker is left with a long list while the other one idles.
        n_workers = len(self.pool.workers)
        while self.again or self.left:
            size = max(1, min(CHUNK, (len(self.again) + self.left) // (2 * n_workers)))
            if len(w.pending) >= 2 * size:  # two lists queued: never idle
                return
            chunk = [self.again.pop() for _ in range(min(size, len(self.again)))]
            k = min(size - len(chunk), self.left)
            chunk += [next(self.fresh) for _ in range(k)]
            self.left -= k
            w.send([(i, self.paths[i]) for i in chunk], chunk)

    def fail_current(self, w: Worker, reason: str) -> None:
        k = w.current()
        self.on_failure(w.pending[k], reason)
        self.again.extend(reversed(w.pending[:k] + w.pending[k + 1 :]))
        w.pending.clear()

    def requeue_all(self, w: Worker) -> None:
        self.again.extend(reversed(w.pending))
        w.pending.clear()

    def receive(self, i: int, w: Worker) -> bool:
        """Take everything worker ``i`` has sent; False if it died (it is replaced then)."""
        try:
            while w.pending and w.conn.poll():
                results = w.conn.recv()
                if isinstance(results, str):  # "ready"
                    w.ready = True
                    continue
                del w.pending[: len(results)]
                w.answered += len(results)
                for r in results:
                    self.on_result(r)
        except (EOFError, OSError):
            w.proc.join(timeout=1)
            code = w.proc.exitcode
            w.kill()
            if w.ready:
                self.fail_current(w, f"worker process died while encoding (exit code {code})")
                self.pool.replace(i)
            else:  # died starting up (imports; a script without the __main__ guard)
                self.requeue_all(w)
                self.pool._start_failed(i)
            return False
        return True

    def check_clocks(self, now: float) -> None:
        """Replace the workers that never started and those stuck on a file past the time limit."""
        for i, w in enumerate(self.pool.workers):
            if not w.ready and now - w.since > STARTUP_LIMIT:  # a worker that never started
                w.kill()
                self.requeue_all(w)
                self.pool._start_failed(i)
            elif w.pending and w.ready and w.busy_for(now) > self.timeout:
                w.kill()
                self.fail_current(w, f"timed out after {self.timeout:g} s")
                self.pool.replace(i)
