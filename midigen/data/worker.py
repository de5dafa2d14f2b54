"""What a worker process of `prepare` runs: encode files into its cache shard, write split parts.

A worker receives lists of ``(index, path)`` pairs and sends back lists of `FileResult`; after
the encoding it receives `Part` messages (a part of the split files to write) and answers each
with `Written`. ``None`` stops it.
"""

from __future__ import annotations

import ctypes
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..encoding import EncodingConfig, Tokenizer
from ..errors import MidiError
from ..midi import Score
from .assemble import Part, Written, write_part
from .cache import ShardWriter, content_hash, find_hash

if TYPE_CHECKING:
    from collections.abc import Iterable
    from multiprocessing.connection import Connection

SEND_EVERY = 0.05  # seconds: a worker reports at least this often while it works through a list


class FileResult(NamedTuple):
    """What a worker reports of one file (the parent journals it and fills its `FileTable` row)."""

    index: int  # position of the file in the sorted file list
    hash: str | None  # content hash; None when the file could not be read
    tokens: int = 0
    notes: int = 0  # notes encoded
    error: str | None = None  # why it failed (None: it did not)
    cached: bool = False  # its content is in the cache already: only hashed, the journal has the rest
    shard: str | None = None  # the shard file its tokens were appended to ...
    offset: int = 0  # ... at this byte offset
    last_step: int = 0  # time step of its last token


def encode_one(index: int, path: str, tokenizer: Tokenizer, writer: ShardWriter, known: np.ndarray) -> FileResult:
    """Worker body for one file: read, hash, parse, encode, append its ids to the shard.

    A file whose content is already in the cache is only hashed; the parent has its entry.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileResult(index, None, error=f"cannot read file: {exc.strerror or exc}")
    h = content_hash(data)
    if find_hash(known, h) is not None:
        return FileResult(index, h, cached=True)
    try:
        toks = tokenizer.encode_base(Score.from_bytes(data, path=path))
    except MidiError as exc:
        return FileResult(index, h, error=exc.reason)
    except Exception as exc:  # a bug or something unforeseen: report, never stop the run
        return FileResult(index, h, error=f"{type(exc).__name__}: {exc}")
    shard, offset = writer.append(toks.ids)
    # (steps never go back, so the last one is the largest: it decides the steps' dtype)
    return FileResult(index, h, len(toks), int(toks.stats["encoded_notes"]), None, False, shard, offset,
                      int(toks.steps[-1]))


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


def worker_main(conn: Connection, now: ctypes.Array, shards: str, config: dict, known: bytes,
                inherited: Iterable[Connection] = ()) -> None:
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
    writer = ShardWriter(Path(shards), tokenizer.dtype)
    known_hashes = np.frombuffer(known, "S32")
    try:
        conn.send("ready")  # imports done: from now on the parent's clock runs
        while True:
            msg = conn.recv()
            if msg is None:
                return
            if isinstance(msg, Part):  # a part of the split files to write (after encoding)
                conn.send(Written(write_part(tokenizer, Path(shards), msg)))
                continue
            done, sent = [], time.monotonic()
            for i, p in msg:
                now[0] += 1  # files started so far
                now[1] = time.monotonic()
                done.append(encode_one(i, p, tokenizer, writer, known_hashes))
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
