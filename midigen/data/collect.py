"""The parent's record of every source file: what the workers report lands in a `FileTable`.

Per file a few numbers in arrays, not Python objects: the parent's memory must stay small at
Lakh scale (the tokens themselves stay in the cache until the split files are written).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import CacheEntry, Journal, content_hash

if TYPE_CHECKING:
    from tqdm import tqdm

    from .worker import FileResult


class FileTable:
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

    def record(self, i: int, h: str | None, entry: CacheEntry) -> None:
        if h is not None:
            self.hashes[i] = h.encode()
        if entry.error is not None:
            self.errors[i] = entry.error
        else:
            self.shard[i], self.offset[i], self.tokens[i] = entry.shard, entry.offset, entry.tokens
            self.notes[i], self.last_step[i] = entry.notes, entry.last_step


class Collector:
    """Takes each file's outcome (`on_result`, `on_failure`): into the `FileTable`, new ones into
    the journal too, and counts them on the progress bar."""

    def __init__(self, files: list[str], journal: Journal, bar: tqdm | None, t0: float):
        self.table = FileTable(files)
        self.journal, self.bar, self.t0 = journal, bar, t0
        self.encoded = self.cached = self.notes = self.failed = 0

    def on_result(self, r: FileResult) -> None:
        if r.cached:
            entry = self.journal.lookup(r.hash)
        else:
            if r.hash is not None:  # (None: unreadable, nothing to cache)
                self.journal.add(r.hash, r.shard, r.offset, r.tokens, r.notes, r.last_step, r.error)
            shard_id = self.journal.shard_id(r.shard) if r.shard is not None else -1
            entry = CacheEntry(shard_id, r.offset, r.tokens, r.notes, r.last_step, r.error)
        self._record(r.index, r.hash, entry, r.cached)

    def on_failure(self, i: int, reason: str) -> None:
        """File ``i`` timed out or crashed its worker: cached as a failure."""
        path, h = self.table.files[i], None
        if Path(path).is_file():  # (a FIFO or device would block us as it blocked the worker)
            try:
                h = content_hash(Path(path).read_bytes())
                self.journal.add(h, None, 0, 0, 0, 0, reason)
            except OSError:
                pass
        self._record(i, h, CacheEntry(-1, 0, 0, 0, 0, reason), False)

    def _record(self, i: int, h: str | None, entry: CacheEntry, was_cached: bool) -> None:
        self.table.record(i, h, entry)
        self.cached += was_cached
        self.encoded += not was_cached
        self.notes += entry.notes
        self.failed += entry.error is not None
        bar = self.bar
        bar.update(1)
        if bar.n % 64 == 0 or bar.n == len(self.table.files):
            dt = max(time.monotonic() - self.t0, 1e-9)
            bar.set_postfix(notes_per_s=f"{self.notes / dt:,.0f}", failed=self.failed, refresh=False)

    def close(self) -> None:
        self.journal.flush()  # nothing encoded is lost, even on Ctrl-C
        self.bar.close()
