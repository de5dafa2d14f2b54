"""Which piece goes where: exact duplicates out, then train / valid / test by content hash.

Each piece goes to its split by a hash of its content and the seed, so a piece never leaks
between splits and adding files never moves the old ones.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

SPLITS = ("train", "valid", "test")

if TYPE_CHECKING:
    from .collect import FileTable


def split_of(h: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """The split of a piece, from its content hash: stable when other files come and go."""
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{h}".encode(), digest_size=8).digest(), "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


class SplitPlan(NamedTuple):
    """The pieces of the corpus, as indices into the sorted file list."""

    kept: np.ndarray  # every file that becomes a piece (encoded, not a duplicate), in path order
    by_split: dict[str, np.ndarray]  # split -> its pieces' file indices, in path order
    duplicate_files: list[dict]  # {"path", "same_as"} of every file left out as a duplicate


def plan_splits(table: FileTable, seed: int, valid_fraction: float, test_fraction: float) -> SplitPlan:
    """Drop exact duplicates (files are sorted, so the first path of each content wins), then
    send every kept piece to its split (`split_of`)."""
    files = table.files
    ok = np.flatnonzero(table.shard >= 0)
    _, first, inverse = np.unique(table.hashes[ok], return_index=True, return_inverse=True)
    kept = np.sort(ok[first])
    same_as = ok[first[inverse.ravel()]]
    dup = np.flatnonzero(ok != same_as)
    duplicate_files = [{"path": files[i], "same_as": files[j]} for i, j in zip(ok[dup], same_as[dup], strict=True)]
    where = np.array([SPLITS.index(split_of(h.decode(), seed, valid_fraction, test_fraction))
                      for h in table.hashes[kept]], np.int8).reshape(-1)
    by_split = {s: kept[where == k] for k, s in enumerate(SPLITS)}
    return SplitPlan(kept, by_split, duplicate_files)
