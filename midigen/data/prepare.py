"""`midigen prepare`: folders of MIDI files -> a prepared corpus of memory-mapped token files.

Built for the Lakh MIDI Dataset on a laptop (~176k files, ~5% broken):

* **Parallel.** Worker processes parse and encode; the parent only hands out file paths and
  collects a few numbers per file, so its memory stays flat however many files there are.
  Workers are forked where that is safe (Linux, no other thread in this process) and spawned
  otherwise; each keeps its malloc heap between files (see `worker._keep_heap`).
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

Where each job lives: `pool` (the worker processes) runs `worker` (encode one file, write one
part of the split files); `cache` (shards and journal) keeps the tokens; `collect` records each
file's outcome; `splits` sends each piece to its split; `assemble` writes the split files, the
BPE files and the manifest. This module tells the story.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..assets import find_midi_files, resolve_sources
from ..config import JSONConfig, opt
from ..encoding import EncodingConfig, Tokenizer
from ..errors import VocabError
from .assemble import assemble
from .cache import Journal, ShardWriter, cache_folder
from .collect import Collector
from .pool import Pool
from .splits import plan_splits
from .worker import encode_one


@dataclass
class PrepareConfig(JSONConfig):
    """How `prepare` runs (what the tokens are is the `EncodingConfig`'s business)."""

    workers: int | None = opt(None, "worker processes (None: the CPU count; 0: encode in this process, no time limit)")
    valid_fraction: float = opt(0.05, "fraction of the pieces in the validation split")
    test_fraction: float = opt(0.05, "fraction of the pieces in the test split")
    seed: int = opt(0, "seed of the train/valid/test split (by a hash of each piece's content)")
    timeout: float = opt(60.0, "seconds a worker may spend on one file before it is killed and the file reported")
    bpe_vocab: int | None = opt(None, "also learn action-aware BPE of this vocabulary size, on the train split only")
    start_method: Literal["fork", "spawn"] | None = opt(
        None, "how worker processes start (None: fork on Linux when this process runs no other thread, else spawn)")
    progress: bool = opt(True, "show a progress bar")

    def __post_init__(self):
        super().__post_init__()
        if not (0 <= self.valid_fraction and 0 <= self.test_fraction and self.valid_fraction + self.test_fraction < 1):
            raise ValueError("valid_fraction + test_fraction must lie in [0, 1)")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")


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


def prepare(
    sources: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    encoding: EncodingConfig | None = None,
    config: PrepareConfig | None = None,
    **overrides: object,
) -> PrepareResult:
    """Encode every MIDI file under ``sources`` into a prepared corpus at ``out``.

    ``config``: a `PrepareConfig`; keyword arguments set its fields, e.g. ``workers=0`` (encode
    in this process: no time limit; for debugging), ``valid_fraction=0.1`` or ``bpe_vocab=1000``
    (also learn an action-aware BPE tokenizer of that size on the *train split only*, save it as
    ``tokenizer.json`` and write every split in BPE ids too, ``{split}.bpe.*``). Workers are
    forked on Linux when this process runs no other thread, else spawned (the output is the
    same; ``start_method`` chooses). Returns a `PrepareResult`; the corpus itself is described
    by ``out/manifest.json``.
    """
    cfg = (config or PrepareConfig()).replace(**overrides)
    valid_fraction, test_fraction, seed, workers = cfg.valid_fraction, cfg.test_fraction, cfg.seed, cfg.workers
    timeout, progress, bpe_vocab, start_method = cfg.timeout, cfg.progress, cfg.bpe_vocab, cfg.start_method
    bar_type = _bar_type(progress)
    t0 = time.monotonic()
    sources = resolve_sources(sources)  # (a typo in a folder name would make a corpus of one failure)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoding = encoding or EncodingConfig()
    tokenizer = _check_tokenizer(out, encoding)
    cache = cache_folder(out, encoding)
    journal = Journal(cache, tokenizer.dtype)
    pool = _start_pool(workers, cache, tokenizer, journal, start_method)  # (starting while the files are found)
    try:
        files = _find_files(sources)
        bar = bar_type(total=len(files), desc="prepare", unit="file", disable=not progress, smoothing=0.05)
        collector = Collector(files, journal, bar, t0)
        restarts = _encode_all(files, collector, pool, cache, tokenizer, journal, timeout)
        plan = plan_splits(collector.table, seed, valid_fraction, test_fraction)
        manifest = assemble(out, collector.table, plan, journal, cache, tokenizer, valid_fraction, test_fraction, seed,
                            bpe_vocab, pool)
    finally:
        if pool is not None:
            pool.close()
    seconds = time.monotonic() - t0
    return PrepareResult(out, manifest, collector.encoded, collector.cached, seconds, restarts,
                         collector.notes / max(seconds, 1e-9))


def _bar_type(progress: bool):
    """tqdm's progress bar, or (``progress=False``) `_NoBar` without importing tqdm.auto (~30 ms,
    3% of a 2,000-file run)."""
    if not progress:
        return _NoBar
    from tqdm.auto import tqdm

    return tqdm


def _check_tokenizer(out: Path, encoding: EncodingConfig) -> Tokenizer:
    """The base tokenizer of ``encoding`` (saved with the split files at the end, merges and all);
    a corpus prepared differently already at ``out`` is an error."""
    if (out / "tokenizer.json").exists() or (out / "vocab.json").exists():  # (vocab.json: the old layout)
        try:
            Tokenizer.load(out, expected=encoding)
        except VocabError as exc:
            raise VocabError(f"{out} holds a corpus prepared differently; use another --out or delete it "
                             f"({exc})") from None
    return Tokenizer(encoding)


def _start_pool(workers: int | None, cache: Path, tokenizer: Tokenizer, journal: Journal,
                start_method: str | None) -> Pool | None:
    """The worker processes (one per core by default); None for ``workers=0``."""
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    return Pool(n_workers, cache / "shards", tokenizer, journal.known, start_method) if n_workers > 0 else None


def _find_files(sources: list[str]) -> list[str]:
    files = find_midi_files(sources, as_str=True)
    if not files:
        raise FileNotFoundError("no .mid/.midi files under: " + ", ".join(map(str, sources)))
    return files


def _encode_all(files: list[str], collector: Collector, pool: Pool | None, cache: Path, tokenizer: Tokenizer,
                journal: Journal, timeout: float) -> int:
    """Encode every file (in the workers, or in this process without a pool) into the cache and
    the collector's table; returns the number of workers restarted."""
    try:
        if pool is not None:
            return pool.run(files, timeout, collector.on_result, collector.on_failure)
        writer = ShardWriter(cache / "shards", tokenizer.dtype)
        try:
            for i, f in enumerate(files):
                collector.on_result(encode_one(i, f, tokenizer, writer, journal.known))
        finally:
            writer.close()
        return 0
    finally:
        collector.close()  # the journal flushed: nothing encoded is lost, even on Ctrl-C


class _NoBar:
    """What prepare() uses of a tqdm bar, doing nothing but count (``progress=False``)."""

    def __init__(self, *_args, **_kwargs):
        self.n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_postfix(self, *_args, **_kwargs) -> None:
        pass

    def close(self) -> None:
        pass
