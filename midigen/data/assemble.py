"""The last step of `prepare`: the split files, the BPE files and the manifest, from the cache.

The split files are laid out by the parent (every piece's length is in the journal) and
written part by part by the workers (`write_part`), each part at its own offset; the final names
appear by atomic rename once everything is written, and ``manifest.json`` last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..encoding import Tokenizer
from ..encoding.index import steps_of
from .cache import ShardReader, pwrite_all
from .splits import SPLITS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from numpy.typing import DTypeLike

    from .cache import Journal
    from .collect import FileTable
    from .pool import Pool
    from .splits import SplitPlan

MANIFEST_FORMAT = "midigen.corpus"
MANIFEST_VERSION = 1
PART_TOKENS = 1 << 20  # tokens per part of a split file written by one worker (small: balanced)
WRITE_TOKENS = 1 << 18  # tokens per write: few syscalls, small bounded memory


class Part(NamedTuple):
    """A part of a split's files to write: piece ``j`` is ``n_tokens[j]`` ids at byte
    ``offset[j]`` of the shard file ``names[shard[j]]``; they land back to back from token
    ``start`` of the (already sized) files ``tok_path`` and ``step_path``."""

    tok_path: str
    step_path: str
    steps_dtype: str
    start: int
    names: list[str]  # the shard files' names, by shard id
    shard: np.ndarray
    offset: np.ndarray
    n_tokens: np.ndarray


class Written(NamedTuple):
    """A worker's answer to a `Part`."""

    tokens: int


def write_part(tokenizer: Tokenizer, shards: Path, part: Part) -> int:
    """Copy a part's pieces from the cache into the split files; the steps are rebuilt from the
    ids and stored as ``part.steps_dtype``. Returns the number of tokens written. Runs in the
    workers, so writing a Lakh-sized split takes all cores, not one.
    """
    dtype, sdtype = np.dtype(tokenizer.dtype), np.dtype(part.steps_dtype)
    reader = ShardReader(shards, part.names, dtype)
    ft, fs = os.open(part.tok_path, os.O_WRONLY), os.open(part.step_path, os.O_WRONLY)
    chunk, at = [], part.start

    def flush():  # one write per file for ~WRITE_TOKENS tokens; steps over the whole chunk at once
        nonlocal at
        ids = np.concatenate(chunk)
        steps = steps_of(ids, tokenizer, np.cumsum([0] + [len(c) for c in chunk[:-1]]))
        pwrite_all(ft, ids, at * dtype.itemsize)
        pwrite_all(fs, steps.astype(sdtype, copy=False), at * sdtype.itemsize)
        at += len(ids)
        chunk.clear()

    try:
        size = 0
        for sh, off, n in zip(part.shard.tolist(), part.offset.tolist(), part.n_tokens.tolist(), strict=True):
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
    return at - part.start


def _temp_files(out: Path, prefix: str) -> tuple[Path, Path, Path, list]:
    """A split's tokens/steps/index files under temp names, and the renames that publish them."""
    tmp = [out / f"{prefix}.{kind}.tmp" for kind in ("tokens.bin", "steps.bin", "index.npy")]
    return (*tmp, [(t, t.name[: -len(".tmp")]) for t in tmp])


def _write_index(path: Path, lengths: np.ndarray) -> None:
    """``{split}.index.npy``: int64 (pieces, 2), each piece's start offset and length."""
    with open(path, "wb") as f:
        np.save(f, np.stack([np.cumsum(lengths) - lengths, lengths], axis=1).reshape(-1, 2), allow_pickle=False)


def _write_split(out: Path, prefix: str, pieces: Iterable[tuple[np.ndarray, np.ndarray]], dtype: DTypeLike,
                 notes_of: np.ndarray, steps_dtype: DTypeLike) -> tuple[list, dict]:
    """Stream (ids, steps) pieces into ``prefix``.tokens.bin/.steps.bin/.index.npy (temp names).

    Returns the (temp, final) renames to do and the split's sizes. (The BPE files; the base
    files are written in parts by the workers, `write_part`.)
    """
    tok_tmp, step_tmp, index_tmp, renames = _temp_files(out, prefix)
    lengths = []
    notes = 0
    with open(tok_tmp, "wb") as ft, open(step_tmp, "wb") as fs:
        for ids, steps in pieces:
            ft.write(np.asarray(ids).astype(dtype).tobytes())
            fs.write(np.asarray(steps).astype(steps_dtype).tobytes())
            lengths.append(len(ids))
            notes += int(notes_of[np.asarray(ids, np.int64)].sum())
    lengths = np.array(lengths, np.int64)
    _write_index(index_tmp, lengths)
    return renames, {"files": len(lengths), "tokens": int(lengths.sum()), "notes": int(notes)}


def _lay_out(out: Path, table: FileTable, plan: SplitPlan, shards: list[str], dtype: np.dtype, sdtype: np.dtype):
    """Create the split files at their full size (temp names) and cut them into `Part`\\ s.

    Returns the splits' sizes (for the manifest), the renames and the parts.
    """
    splits, renames, parts = {}, [], []
    for split in SPLITS:
        idx = np.array(plan.by_split[split], np.int64)
        lengths = table.tokens[idx]
        starts = np.cumsum(lengths) - lengths
        tok_tmp, step_tmp, index_tmp, r = _temp_files(out, split)
        n_tokens = int(lengths.sum())
        for path, size in ((tok_tmp, n_tokens * dtype.itemsize), (step_tmp, n_tokens * sdtype.itemsize)):
            with open(path, "wb") as f:
                f.truncate(size)
        _write_index(index_tmp, lengths)
        cut = np.searchsorted(starts, np.arange(0, int(lengths.sum()), PART_TOKENS), side="left")
        for a, b in zip(cut, np.append(cut[1:], len(idx)), strict=False):  # (no cut in an empty split)
            if b > a:
                piece = idx[a:b]
                parts.append(Part(str(tok_tmp), str(step_tmp), sdtype.name, int(starts[a]), shards,
                                  table.shard[piece], table.offset[piece], table.tokens[piece]))
        splits[split] = {"files": len(idx), "tokens": int(lengths.sum()), "notes": int(table.notes[idx].sum())}
        renames += r
    return splits, renames, parts


def _write_tokenizer(out: Path, tokenizer: Tokenizer, bpe_vocab: int | None,
                     split_ids: Callable[[str], Iterator[np.ndarray]], sdtype: np.dtype,
                     renames: list) -> tuple[Tokenizer, dict | None]:
    """Save ``tokenizer.json`` (renamed into place with the split files). With ``bpe_vocab``, first
    learn BPE merges on the train split and write every split in BPE ids too (``{split}.bpe.*``).
    Returns the tokenizer saved (the base one, or one with merges) and the manifest's "bpe" entry."""
    final, bpe_info = tokenizer, None
    if bpe_vocab:
        from ..encoding.index import Tokens

        def split_pieces(split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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
    renames.append((final.save(out / "tokenizer.tmp.json"), "tokenizer.json"))
    if (out / "vocab.json").exists():  # a corpus of the old layout, prepared again: now in tokenizer.json
        renames.append((None, "vocab.json"))
    return final, bpe_info


def _write_manifest(out: Path, manifest: dict, table: FileTable) -> None:
    tmp = out / f"manifest.json.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        # "sources" (path -> content hash, sorted by path) is written line by line from the
        # arrays: at Lakh scale a dict of 176k strings would be the parent's largest object.
        head = json.dumps(manifest, indent=1)
        f.write(head[:-2] + ',\n "sources": {')
        for i, path in enumerate(table.files):
            h = table.hashes[i].decode() or None
            f.write(("," if i else "") + "\n  " + json.dumps(path) + ": " + json.dumps(h))
        f.write("\n }\n}")
    os.replace(tmp, out / "manifest.json")


def assemble(out: Path, table: FileTable, plan: SplitPlan, journal: Journal, cache: Path, tokenizer: Tokenizer,
             valid_fraction: float, test_fraction: float, seed: int, bpe_vocab: int | None = None,
             pool: Pool | None = None) -> dict:
    """Write the split files and the manifest from the cache: the split files written in parts
    (by the workers when there are any), then every final name by atomic rename and the
    manifest last. Returns the manifest (without its per-file "sources" table)."""
    files = table.files
    failures = [{"path": files[i], "error": table.errors[i]} for i in sorted(table.errors)]
    dtype = np.dtype(tokenizer.dtype)
    # Steps as uint16 (2 bytes a token instead of 4) while every piece is shorter than 65,536
    # steps (over two hours at 4 steps a beat and 120 bpm), else int32.
    sdtype = np.dtype(np.uint16 if table.last_step[plan.kept].max(initial=0) <= np.iinfo(np.uint16).max else np.int32)

    # The split files: the parent lays them out (sizes, offsets: known from the journal), the
    # workers copy the pieces in, part by part.
    splits, renames, parts = _lay_out(out, table, plan, journal.shards, dtype, sdtype)
    if pool is not None:
        written = pool.map_parts(parts)
    else:
        written = [write_part(tokenizer, cache / "shards", part) for part in parts]
    if sum(written) != sum(s["tokens"] for s in splits.values()):  # (never seen; never rename a short file)
        raise RuntimeError(f"{out}: the split files came out incomplete; run prepare again")

    reader = ShardReader(cache / "shards", journal.shards, dtype)

    def split_ids(split: str) -> Iterator[np.ndarray]:
        for i in plan.by_split[split]:
            yield reader.read(table.shard[i], table.offset[i], table.tokens[i])

    try:
        for split in SPLITS:
            pieces_tmp = out / f"{split}.pieces.json.tmp"
            with open(pieces_tmp, "w") as f:  # json.dump streams: no whole-file string in memory
                json.dump([files[i] for i in plan.by_split[split]], f, indent=0)
            renames.append((pieces_tmp, f"{split}.pieces.json"))
        final, bpe_info = _write_tokenizer(out, tokenizer, bpe_vocab, split_ids, sdtype, renames)
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
        "duplicates": len(plan.duplicate_files),
        "duplicate_files": plan.duplicate_files,
        "splits": splits,
    }
    if bpe_info:
        manifest["bpe"] = bpe_info
    for tmp, name in renames:
        if tmp is None:
            (out / name).unlink()
        else:
            os.replace(tmp, out / name)
    _write_manifest(out, manifest, table)
    return manifest  # (without "sources": read manifest.json for the per-file table)
