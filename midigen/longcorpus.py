"""The long-piece corpus: music21's long works with their repeats played out, plus long MIDI files.

Memory matters where music comes back beyond the local context (a theme returning, a
recapitulation), so a memory study needs pieces many segments long. `export_long_corpus` makes
such a corpus from what ships with the packages (nothing is downloaded)::

    midigen export-corpus --set long --out data/long --include ../shared/corpus --min-beats 200

* **Selection**: every single-work file of music21's bundled corpus with at least ``min_notes``
  notes by music21's own metadata (read without parsing a score; files holding collections of
  short tunes, such as the abc books, are left out). At the default 1,500 notes: Beethoven's string
  quartets, Haydn's, Mozart's and Schumann's quartet movements, Weber's concertino, Palestrina's and
  the trecento's mass movements, Monteverdi's longest madrigals, Bach's longest cantata movements.
* **Repeats** are expanded where the score marks them (``Score.expandRepeats``). Where music21
  cannot (badly formed repeat marks), the marks are removed and the work is exported as written:
  counted as ``unexpanded``, never lost.
* **Includes**: the MIDI files under each ``include`` folder of at least ``min_beats`` beats are
  copied into the output folder (``{folder}_{path}.mid``); nothing is written anywhere else.
* **Cache**: the journal ``OUT/export.json`` records every work and file (source, status, repeats,
  error, tokens). A second run skips what is there and newer than its source, and what failed or
  was too short before (``retry_failed=True`` tries the failures again), so it costs nothing.
* **Lengths**: tokens per piece under the default encoding (`Tokenizer()`), summarised as count,
  median, p10, p90 and max (`length_table`) in the journal's ``"lengths"``.

Works are exported in parallel processes, each under a ``timeout`` in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import atomic
from .datasets import _safe_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .midi import Score

JOURNAL = "export.json"
FORMAT, VERSION = "midigen.export", 1
MIDI_SUFFIXES = (".mid", ".midi")


def long_works(min_notes: int = 1500, composers: list[str] | None = None) -> list[tuple[str, int]]:
    """``(path in music21's corpus, notes)`` of each single-work file with at least ``min_notes``
    notes (music21's metadata), sorted by path; ``composers``: only these top folders."""
    from music21 import corpus

    notes: dict[str, int] = defaultdict(int)
    entries: dict[str, int] = defaultdict(int)
    for e in corpus.corpora.CoreCorpus().metadataBundle[:]:  # ([:]: iterating it is quadratic)
        if e.metadata is None:
            continue
        rel = str(e.sourcePath)
        notes[rel] += e.metadata.noteCount or 0
        entries[rel] += 1
    keep = set(composers) if composers else None
    return sorted((rel, n) for rel, n in notes.items()
                  if entries[rel] == 1 and n >= min_notes and (keep is None or rel.split("/")[0] in keep))


def _strip_repeats(sc: Any) -> int:  # (a music21 Score: music21 is imported lazily)
    """Remove every repeat mark (barlines, expressions, brackets) of a music21 score; how many."""
    from music21 import bar, repeat, spanner, stream

    n = 0
    for m in sc.recurse().getElementsByClass(stream.Measure):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(m, side), bar.Repeat):
                setattr(m, side, None)
                n += 1
    for el in list(sc.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        el.activeSite.remove(el)
        n += 1
    for sp in list(sc.spannerBundle.getByClass(spanner.RepeatBracket)):
        sc.spannerBundle.remove(sp)
        n += 1
    return n


def write_expanded(sc: Any, dst: str | os.PathLike) -> dict:
    """Write a music21 score to MIDI with its repeats expanded, or, where music21 cannot expand
    them, with its repeat marks removed. ``{"repeats": "expanded" | "none" | "unexpanded",
    "repeat_error": str (unexpanded only)}``."""
    from music21 import stream

    def bars(s: Any) -> int:
        return sum(len(p.getElementsByClass(stream.Measure)) for p in s.parts) if s.parts else 0

    info: dict = {}
    try:
        before = bars(sc)
        sc = sc.expandRepeats()
        info["repeats"] = "expanded" if bars(sc) > before else "none"
    except Exception as exc:  # noqa: BLE001 (music21's ExpanderException and its relatives)
        _strip_repeats(sc)
        info = {"repeats": "unexpanded", "repeat_error": f"{type(exc).__name__}: {exc}"}
    with atomic.atomic_path(dst) as tmp:
        sc.write("midi", fp=str(tmp))
    return info


def _tokens(midi: str | os.PathLike | Score) -> int:
    from .encoding import Tokenizer

    return len(Tokenizer().encode(midi))


def _alarm(timeout: int):
    def handler(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"took longer than {timeout} s")

    signal.signal(signal.SIGALRM, handler)
    signal.alarm(timeout)


def _export_work(src: str, dst: str, timeout: int) -> dict:
    """Worker: parse one corpus file, write it with repeats expanded, count its tokens."""
    from music21 import converter, stream

    _alarm(timeout)
    try:
        sc = converter.parse(src)
        if isinstance(sc, stream.Opus):
            if len(sc.scores) != 1:
                raise ValueError(f"a collection of {len(sc.scores)} scores, not one work")
            sc = sc.scores[0]
        info = write_expanded(sc, dst)
        return {"status": "written", **info, "tokens": _tokens(dst)}
    except Exception as exc:  # noqa: BLE001 (music21 raises many kinds: report it, never stop the export)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        signal.alarm(0)


def _include_file(src: str, dst: str, min_beats: float, timeout: int) -> dict:
    """Worker: copy one MIDI file if it lasts at least ``min_beats`` beats."""
    from .encoding import Tokenizer
    from .midi import read_midi

    _alarm(timeout)
    try:
        score = read_midi(src)
        beats = float(score.end_beats.max(initial=0))
        if beats < min_beats:
            return {"status": "short", "beats": beats}
        tokens = len(Tokenizer().encode(score))
        with atomic.atomic_path(dst) as tmp:
            shutil.copy2(src, tmp)
        return {"status": "written", "beats": beats, "tokens": tokens}
    except Exception as exc:  # noqa: BLE001 (a broken file is reported, never stops the export)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        signal.alarm(0)


def _load_journal(out: Path) -> dict:
    try:
        d = json.loads((out / JOURNAL).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return d.get("works", {}) if d.get("format") == FORMAT and d.get("version") == VERSION else {}


def _cached(entry: dict | None, src: Path, dst: Path, retry_failed: bool) -> bool:
    """Whether a job's earlier result still holds: same source, unchanged, and its output newer."""
    if not entry or entry.get("source") != str(src) or entry.get("source_mtime") != src.stat().st_mtime:
        return False
    if entry["status"] == "written":
        return dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime and "tokens" in entry
    return entry["status"] == "short" or not retry_failed


def lengths_summary(tokens: Iterable[int]) -> dict:
    """count, median, p10, p90, max and total of tokens per piece."""
    t = np.asarray(list(tokens), np.int64)
    if not len(t):
        return {"count": 0}
    p10, med, p90 = np.percentile(t, [10, 50, 90])
    return {"count": len(t), "median": float(med), "p10": float(p10), "p90": float(p90),
            "max": int(t.max()), "total": int(t.sum())}


def length_table(lengths: dict) -> str:
    """The length summaries (``{group: lengths_summary}``) as a small table."""
    lines = [f"{'tokens per piece':<18} {'count':>6} {'median':>8} {'p10':>8} {'p90':>8} {'max':>8} {'total':>10}"]
    for name, s in lengths.items():
        if s.get("count"):
            lines.append(f"{name:<18} {s['count']:>6} {s['median']:>8.0f} {s['p10']:>8.0f} {s['p90']:>8.0f} "
                         f"{s['max']:>8} {s['total']:>10,}")
        else:
            lines.append(f"{name:<18} {0:>6}")
    return "\n".join(lines)


def export_long_corpus(
    out_dir: str | os.PathLike, min_notes: int = 1500, composers: list[str] | None = None,
    include: Iterable[str | os.PathLike] = (), min_beats: float = 200,
    workers: int | None = None, timeout: int = 600, limit: int | None = None, retry_failed: bool = False,
    progress: bool = True,
) -> dict:
    """Export the long-piece corpus to ``out_dir`` (see the module docstring).

    ``limit``: only the first music21 works (by path). Returns counts of this selection
    (``written`` now, ``cached``, ``expanded``, ``unexpanded``, ``short``; ``failed``: [(source,
    error)]), the ``lengths`` of every piece the folder's journal lists (``{"music21", "include",
    "all"}``: `lengths_summary`) and the ``journal``'s path.
    """
    from music21 import common
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(common.getCorpusFilePath())
    works = long_works(min_notes, composers)[:limit]
    jobs = {}  # name -> (kind, source, destination)
    for rel, _ in works:
        name = _safe_name(rel.rsplit(".", 1)[0]) + ".mid"
        jobs[name] = ("music21", root / rel, out / name)
    for folder in include:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--include {folder}: no such folder")
        for f in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()):
            name = _safe_name(f"{folder.resolve().name}/{f.relative_to(folder).with_suffix('')}") + ".mid"
            jobs[name] = ("include", f, out / name)
    journal = _load_journal(out)
    todo = [n for n, (_, src, dst) in jobs.items() if not _cached(journal.get(n), src, dst, retry_failed)]
    cached = len(jobs) - len(todo)

    def save():  # every entry stays (its file is still in the folder); lengths of the files there
        there = {n: e for n, e in journal.items() if e["status"] != "written" or (out / n).exists()}
        atomic.write_json(out / JOURNAL, {"format": FORMAT, "version": VERSION, "lengths": _lengths(there),
                                          "works": dict(sorted(there.items()))})
        return there

    if todo:
        with ProcessPoolExecutor(workers or os.cpu_count() or 1) as ex:
            futs = {}
            for n in todo:
                kind, src, dst = jobs[n]
                fut = (ex.submit(_export_work, str(src), str(dst), timeout) if kind == "music21"
                       else ex.submit(_include_file, str(src), str(dst), min_beats, timeout))
                futs[fut] = n
            for f in tqdm(as_completed(futs), total=len(futs), disable=not progress, desc="export"):
                n = futs[f]
                kind, src, _ = jobs[n]
                try:
                    result = f.result()
                except Exception as exc:  # noqa: BLE001 (a worker that died: BrokenProcessPool)
                    result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                journal[n] = {"kind": kind, "source": str(src), "source_mtime": src.stat().st_mtime, **result}
                save()
    there = save()
    mine = {n: there[n] for n in jobs if n in there}  # this selection's works and files

    def count(key: str, value: object) -> int:
        return sum(1 for e in mine.values() if e.get(key) == value)

    return {"written": sum(1 for n in todo if mine.get(n, {}).get("status") == "written"), "cached": cached,
            "expanded": count("repeats", "expanded"), "unexpanded": count("repeats", "unexpanded"),
            "short": count("status", "short"),
            "failed": [(e["source"], e["error"]) for e in mine.values() if e["status"] == "failed"],
            "lengths": _lengths(there), "journal": str(out / JOURNAL)}


def _lengths(entries: dict) -> dict:
    tokens = {k: [e["tokens"] for e in entries.values() if e["status"] == "written" and e["kind"] == k]
              for k in ("music21", "include")}
    return {"music21": lengths_summary(tokens["music21"]), "include": lengths_summary(tokens["include"]),
            "all": lengths_summary(tokens["music21"] + tokens["include"])}
