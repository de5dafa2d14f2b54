"""Bundled and derived datasets, made from music21's own corpus (no downloads).

``export_music21_corpus`` turns works of music21's bundled corpus into MIDI files; the default
dataset ``midigen/assets/bach`` is the Bach chorales made by::

    midigen export-corpus --composer bach --out midigen/assets/bach
"""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .atomic import atomic_path

#: Suffixes of music21 corpus files that hold real scores (rntxt files are harmonic analyses).
_SCORE_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn", ".mid", ".midi", ".abc", ".md"}


def _safe_name(rel: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", rel)
    return stem.strip("_") or "piece"


def _export_one(src: str, dst: str, timeout: int) -> tuple[str, str | None]:
    """Parse one corpus file with music21 and write each of its scores to MIDI."""
    from music21 import converter, stream

    def _alarm(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"took longer than {timeout} s")

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        obj = converter.parse(src)
        if isinstance(obj, stream.Opus):  # e.g. abc files holding several tunes
            scores = list(obj.scores)
        else:
            scores = [obj]
        written = 0
        for i, sc in enumerate(scores):
            out = dst if len(scores) == 1 else dst.replace(".mid", f"_{i:03d}.mid")
            with atomic_path(out) as tmp:
                sc.write("midi", fp=str(tmp))
            written += 1
        return src, None if written else "no scores"
    except Exception as exc:  # music21 raises many kinds; report, never stop the export
        return src, f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)


def export_music21_corpus(
    out_dir: str | os.PathLike,
    composer: str | None = "bach",
    workers: int | None = None,
    timeout: int = 120,
    progress: bool = True,
    limit: int | None = None,
) -> dict:
    """Export music21's bundled corpus (or some of its folders) to ``out_dir`` as MIDI.

    ``composer``: a folder of music21's corpus ("bach", "beethoven", ...), several separated by
    commas, or None for everything. Files are named after their path in the corpus
    (``beethoven_opus18no1_movement1.mid``). Files that already exist are skipped, so an
    interrupted export resumes; ``limit`` exports only the first works (sorted by path).
    Returns ``{"written": n, "skipped": n, "failed": [(path, error), ...]}``.
    """
    from music21 import common, corpus
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(common.getCorpusFilePath())
    if composer:
        paths = [p for c in composer.split(",") for p in corpus.getComposer(c.strip())]
    else:
        paths = corpus.getPaths()
    jobs = []
    for p in sorted(Path(x) for x in paths):
        if p.suffix.lower() not in _SCORE_SUFFIXES:
            continue
        try:
            rel = str(p.relative_to(root))
        except ValueError:
            rel = p.name
        if composer == "bach":  # the bundled dataset's names: bwv1.6.mid
            rel = p.name
        name = _safe_name(rel.rsplit(".", 1)[0]) + ".mid"
        dst = out / name
        if dst.exists() or any(out.glob(name.replace(".mid", "_000.mid"))):
            continue
        jobs.append((str(p), str(dst)))
    if limit is not None:
        jobs = jobs[:limit]
    skipped = len(paths) - len(jobs)
    failed = []
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as ex:
        futs = [ex.submit(_export_one, s, d, timeout) for s, d in jobs]
        for f in tqdm(as_completed(futs), total=len(futs), disable=not progress, desc="export"):
            src, err = f.result()
            if err:
                failed.append((src, err))
    return {"written": len(jobs) - len(failed), "skipped": skipped, "failed": failed}
