"""The token cache of `prepare`: shard files of token ids, and the journal that indexes them.

Each file's token ids are cached under ``out/cache/v3-<encoding key>/``: appended to its
worker's shard file (`ShardWriter`), then recorded by content hash in ``journal.tsv``
(`Journal`), a line the parent writes only once the tokens are on disk. Killed at any moment
(even ``kill -9``) and run again, prepare picks up where it stopped: a torn last line or tokens
nobody recorded are simply ignored. A few shard files instead of one file per MIDI file: at
Lakh scale, 176k small files cost as much kernel time as the encoding itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    from ..encoding import EncodingConfig

CACHE_VERSION = 3  # the cache layout (shards + journal with each piece's last step); older caches are ignored


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def cache_folder(out: Path, encoding: EncodingConfig) -> Path:
    """Where the cache of a corpus at ``out`` lives for ``encoding``."""
    # The cache is keyed by encoding too, so corpora with other configs can share a folder tree.
    config_key = hashlib.blake2b(json.dumps(encoding.to_dict(), sort_keys=True).encode(), digest_size=6).hexdigest()
    return out / "cache" / f"v{CACHE_VERSION}-{config_key}"


def find_hash(known: np.ndarray, h: str) -> int | None:
    """Position of the content hash ``h`` in the sorted array ``known`` (``S32``), or None."""
    i = int(np.searchsorted(known, h.encode()))
    return i if i < len(known) and known[i] == h.encode() else None


def pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    """Write all of ``arr``'s bytes at byte ``offset`` of ``fd`` (looping on partial writes)."""
    view = memoryview(np.ascontiguousarray(arr)).cast("B")
    while view:  # (a regular file takes it in one write; loop for the rare partial write)
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class ShardWriter:
    """A worker's append-only shard: the token ids of the files it encodes, back to back.

    One file per worker process, created on first use, appended with one ``write`` per MIDI file:
    a Lakh run makes a handful of cache files instead of 176k (which cost as much kernel time as
    the encoding itself). Ids only (the vocabulary's dtype, 2 bytes per token): the time steps
    follow from them (`steps_of`). A worker killed mid-write leaves a torn tail nobody points to.
    """

    def __init__(self, folder: Path, dtype: DTypeLike):
        self.folder, self.dtype = folder, np.dtype(dtype)
        self.fd, self.name, self.size = None, None, 0

    def append(self, ids: ArrayLike) -> tuple[str, int]:
        """Append ``ids``; returns the shard's name and the byte offset they start at."""
        if self.fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.name = f"{os.getpid()}-{secrets.token_hex(4)}.bin"
            self.fd = os.open(self.folder / self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        data = np.ascontiguousarray(ids, self.dtype)
        offset, self.size = self.size, self.size + data.nbytes
        pwrite_all(self.fd, data, offset)
        return self.name, offset

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ShardReader:
    """Reads pieces back from the shard files ``names`` (by position), one open file each."""

    def __init__(self, folder: Path, names: list[str], dtype: DTypeLike):
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


class CacheEntry(NamedTuple):
    """Where a file's tokens are in the cache, or why it failed."""

    shard: int  # shard id (position in `Journal.shards`); -1: failed
    offset: int  # byte offset in the shard
    tokens: int
    notes: int  # notes encoded
    last_step: int  # time step of its last token (decides the steps' dtype)
    error: str | None  # why it failed (None: it did not)


class Journal:
    """The cache's table of contents: one line per file ever encoded (by content hash).

    ``hash  shard  offset  tokens  notes  last_step  error`` (tab-separated, error as JSON or
    empty; ``last_step`` lets the parent choose the steps' dtype before any split file exists). Only
    the parent appends, in whole lines, and only after a worker reported the file done, so every
    complete line points at bytes that are on disk; a torn last line (kill -9 mid-write) is cut
    off when the journal is next opened. The first line of a hash wins.
    """

    def __init__(self, folder: Path, dtype: DTypeLike):
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

    def lookup(self, h: str) -> CacheEntry | None:
        """The entry of a cached hash, or None."""
        i = find_hash(self.known, h)
        if i is None:
            return None
        e = int(self.k_error[i])
        return CacheEntry(int(self.k_shard[i]), int(self.k_offset[i]), int(self.k_tokens[i]), int(self.k_notes[i]),
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
