"""`midigen check`: does every file survive encode -> decode, and what does the round trip change?

For each MIDI file: encode and decode it, then compare the decoded notes with the original
quantised to the grid, note by note. A note is (instrument, pitch, onset step, duration in steps
clipped to [1, max_duration]); notes that quantise onto the same instrument, pitch and onset count
once, with the longest duration. With ``parts``, a note is (part, pitch, onset, duration): a part
being a track (and instrument), numbered in order on both sides. The reference quantisation below
is written separately from the encoder's (Python fractions here, integer numpy there), so a bug in
one cannot hide in both.

Beyond the notes, `round_trip_changes` measures what the encoding changes by design: the tempo
(rounded to its token's bin), the dynamics (every decoded note has one velocity), the ticks per
quarter note and the time signatures (decoded scores are 4/4).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from . import atomic
from .assets import find_midi_files, resolve_sources
from .encoding import EncodingConfig, Tokenizer
from .errors import MidiError
from .midi import DRUMS, Score, read_midi


def _who(score: Score, config: EncodingConfig) -> list[int]:
    """What plays each note, as the check counts it: its instrument (0 without instrument tokens),
    or with parts its part: the rank of its (part, instrument) pair."""
    if config.parts:
        pairs = score.part.astype(np.int64) * (DRUMS + 1) + score.instrument
        return np.unique(pairs, return_inverse=True)[1].reshape(-1).tolist()
    if config.instruments:
        return np.where(score.is_drum, DRUMS, score.program).tolist()
    return [0] * len(score)


def reference_notes(score: Score, config: EncodingConfig) -> dict:
    """The original's notes on the grid: ``{(instrument or part, pitch, onset): duration}``."""
    spb, tpq, maxd = config.steps_per_beat, score.ticks_per_quarter, config.max_duration
    half = Fraction(1, 2)
    notes: dict = {}
    for inst, pitch, start, end in zip(
        _who(score, config), score.pitch.tolist(), score.start.tolist(), score.end.tolist(), strict=True,
    ):
        onset = math.floor(Fraction(start * spb, tpq) + half)
        end_step = math.floor(Fraction(end * spb, tpq) + half)
        dur = min(max(end_step - onset, 1), maxd)
        key = (inst, pitch, onset)
        if notes.get(key, 0) < dur:
            notes[key] = dur
    return notes


def decoded_notes(score: Score, config: EncodingConfig) -> dict:
    spb, tpq = config.steps_per_beat, score.ticks_per_quarter
    out = {}
    for inst, pitch, start, end in zip(
        _who(score, config), score.pitch.tolist(), score.start.tolist(), score.end.tolist(), strict=True
    ):
        onset = Fraction(start * spb, tpq)
        out[(inst, pitch, int(onset))] = int(Fraction(end * spb, tpq) - onset)
    return out


def note_f1(reference: dict, decoded: dict) -> tuple[float, float, float]:
    ref = set(reference.items())
    dec = set(decoded.items())
    tp = len(ref & dec)
    precision = tp / len(dec) if dec else float(not ref)
    recall = tp / len(ref) if ref else float(not dec)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _steps(ticks: np.ndarray, tpq: int, spb: int) -> np.ndarray:
    """Ticks to the nearest step (half up), as `reference_notes` rounds onsets."""
    return (2 * np.asarray(ticks, np.int64) * spb + tpq) // (2 * tpq)


def _tempo_by_note(score: Score, config: EncodingConfig) -> dict:
    """``{(instrument, pitch, onset step): qpm}``: the tempo each note plays at, on the step grid
    (a tempo change and a note on one step: the note has the new tempo; MIDI's 120 before any)."""
    spb, tpq = config.steps_per_beat, score.ticks_per_quarter
    onset = _steps(score.start, tpq, spb)
    i = np.searchsorted(_steps(score.tempo_ticks, tpq, spb), onset, side="right") - 1
    qpm = np.where(i >= 0, score.tempo_qpm[np.maximum(i, 0)] if len(score.tempo_qpm) else 120.0, 120.0)
    keys = zip(_who(score, config), score.pitch.tolist(), onset.tolist(), strict=True)
    return dict(zip(keys, qpm.tolist(), strict=True))


def _velocity_bins_kept(score: Score, back: Score, config: EncodingConfig) -> float | None:
    """With velocity bins: the share of decoded notes whose bin is the bin of an original note at
    their place (part or instrument, pitch, onset step); None without velocity bins."""
    if not config.velocity_bins:
        return None
    spb = config.steps_per_beat
    where = lambda sc: zip(_who(sc, config), sc.pitch.tolist(),  # noqa: E731
                           _steps(sc.start, sc.ticks_per_quarter, spb).tolist(), strict=True)
    bins: dict = {}
    for k, b in zip(where(score), config.velocity_bin(score.velocity).tolist(), strict=True):
        bins.setdefault(k, set()).add(b)
    got = [b in bins.get(k, ()) for k, b in zip(where(back), config.velocity_bin(back.velocity).tolist(), strict=True)]
    return float(np.mean(got)) if got else 1.0


def round_trip_changes(score: Score, back: Score, config: EncodingConfig) -> dict:
    """What encode -> decode changed beyond the notes' grid: tempo, dynamics, resolution, metre.

    ``tempo_error_qpm``/``tempo_error_pct``: the largest difference, over the notes found in both,
    between the tempo a note is played at before and after, both on the step grid (so this is the
    tempo's value: tempo tokens are bins 2**(1/12) apart by default, up to ~2.9% off, and clipped
    to [min_tempo, max_tempo]; where notes moved, note F1 says so); ``velocity_min``/``velocity_max``
    of the original, and ``dynamics_flattened`` when its notes had more than one velocity (decoded notes all get
    ``config.velocity``; with velocity bins: never, and ``velocity_bins_kept`` is the share of
    decoded notes that kept their bin); ticks per quarter before and after; ``time_signatures_lost`` when the
    original had a time signature other than 4/4 (decoded scores are 4/4).
    """
    before, after = _tempo_by_note(score, config), _tempo_by_note(back, config)
    pairs = np.array([(before[k], q) for k, q in after.items() if k in before], np.float64).reshape(-1, 2)
    err = np.abs(pairs[:, 1] - pairs[:, 0])
    vel = score.velocity
    ts = set(zip(score.ts_numerator.tolist(), score.ts_denominator.tolist(), strict=True))
    return {
        "tempo_error_qpm": round(float(err.max(initial=0.0)), 3),
        "tempo_error_pct": round(float((100 * err / pairs[:, 0]).max(initial=0.0)), 3),
        "velocity_min": int(vel.min()) if len(vel) else None,
        "velocity_max": int(vel.max()) if len(vel) else None,
        "dynamics_flattened": bool(len(vel) and vel.min() != vel.max() and not config.velocity_bins),
        "velocity_bins_kept": _velocity_bins_kept(score, back, config),
        "ticks_per_quarter": [int(score.ticks_per_quarter), int(back.ticks_per_quarter)],
        "time_signatures_lost": bool(ts - {(4, 4)}),
    }


@dataclass
class FileResult:
    path: str
    notes: int = 0
    tokens: int = 0
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0
    error: str | None = None
    stats: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)  # `round_trip_changes`


def check_file(path: str | os.PathLike, tokenizer: Tokenizer) -> FileResult:
    try:
        score = read_midi(path)
        toks = tokenizer.encode(score)
        back = tokenizer.decode(toks.ids, strict=True)
    except MidiError as exc:
        return FileResult(str(path), error=exc.reason)
    except Exception as exc:  # a bug, not bad input: report it with its type, keep going
        return FileResult(str(path), error=f"{type(exc).__name__}: {exc}")
    ref = reference_notes(score, tokenizer.config)
    p, r, f = note_f1(ref, decoded_notes(back, tokenizer.config))
    changes = round_trip_changes(score, back, tokenizer.config)
    return FileResult(str(path), len(ref), len(toks), p, r, f, None, toks.stats, changes)


def check(paths: Iterable[str | os.PathLike], config: EncodingConfig | None = None, progress: bool = True) -> dict:
    """Round-trip every MIDI file under ``paths``; returns the report as a dict.

    ``paths``: files and folders (searched recursively), or ``"bach"`` for the bundled chorales;
    one that does not exist raises FileNotFoundError naming it.
    """
    from tqdm.auto import tqdm

    tokenizer = Tokenizer(config or EncodingConfig())
    files = find_midi_files(resolve_sources(paths))
    results = [check_file(f, tokenizer) for f in tqdm(files, desc="check", unit="file", disable=not progress)]
    ok = [r for r in results if r.error is None]
    f1 = np.array([r.f1 for r in ok]) if ok else np.zeros(0)
    worst_tempo = max(ok, key=lambda r: r.changes["tempo_error_pct"], default=None)
    return {
        "files": len(results),
        "ok": len(ok),
        "failed": [{"path": r.path, "error": r.error} for r in results if r.error is not None],
        "note_f1_min": float(f1.min()) if len(f1) else None,
        "note_f1_mean": float(f1.mean()) if len(f1) else None,
        "notes": int(sum(r.notes for r in ok)),
        "tokens": int(sum(r.tokens for r in ok)),
        "tempo_error_pct_max": worst_tempo.changes["tempo_error_pct"] if worst_tempo else None,
        "tempo_error_qpm_max": max((r.changes["tempo_error_qpm"] for r in ok), default=None),
        "tempo_error_worst_file": worst_tempo.path if worst_tempo else None,
        "dynamics_flattened": sum(r.changes["dynamics_flattened"] for r in ok),
        "velocity_bins_kept_min": min((r.changes["velocity_bins_kept"] for r in ok), default=None)
        if tokenizer.config.velocity_bins else None,
        "time_signatures_lost": sum(r.changes["time_signatures_lost"] for r in ok),
        "velocity": tokenizer.config.velocity,
        "encoding": tokenizer.config.to_dict(),
        "results": [asdict(r) for r in results],
    }


def _short(path: str, width: int) -> str:
    return path if len(path) <= width else "..." + path[-(width - 3):]


def _velocities(c: dict) -> str:
    lo, hi = c["velocity_min"], c["velocity_max"]
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def format_table(report: dict, width: int = 60) -> str:
    """One line per file: notes, tokens, note F1, largest tempo change, the original's velocities."""
    vel = report["velocity"]
    lines = [f"{'file':<{width}} {'notes':>7} {'tokens':>7} {'F1':>7} {'tempo':>7} {'velocity':>12}  problem"]
    for r in report["results"]:
        name = _short(r["path"], width)
        if r["error"]:
            lines.append(f"{name:<{width}} {'-':>7} {'-':>7} {'-':>7} {'-':>7} {'-':>12}  {r['error']}")
        else:
            c = r["changes"]
            tempo = f"{c['tempo_error_pct']:.1f}%"
            lines.append(f"{name:<{width}} {r['notes']:>7} {r['tokens']:>7} {r['f1']:>7.4f} {tempo:>7} "
                         f"{_velocities(c) + f'->{vel}':>12}")
    return "\n".join(lines)


def format_summary(report: dict) -> str:
    """The summary line: files, failures, notes -> tokens, note F1, and what the round trip changes."""
    f1min = "n/a" if report["note_f1_min"] is None else f"{report['note_f1_min']:.4f}"
    f1mean = "n/a" if report["note_f1_mean"] is None else f"{report['note_f1_mean']:.4f}"
    line = (f"{report['files']} files: {report['ok']} ok, {len(report['failed'])} failed; "
            f"{report['notes']} notes -> {report['tokens']} tokens; note F1 min {f1min}, mean {f1mean}")
    if report["ok"]:
        line += (f"; tempo off by up to {report['tempo_error_pct_max']:.1f}% "
                 f"({report['tempo_error_qpm_max']:.1f} qpm: tempo tokens are bins)")
        if report.get("velocity_bins_kept_min") is None:
            line += (f"; every velocity -> {report['velocity']} ({report['dynamics_flattened']} of {report['ok']} "
                     f"files had dynamics)")
        if report.get("velocity_bins_kept_min") is not None:
            line += f"; velocity bins kept: at least {100 * report['velocity_bins_kept_min']:.1f}% of notes per file"
        if report["time_signatures_lost"]:
            line += f"; {report['time_signatures_lost']} had a time signature other than 4/4 (decoded as 4/4)"
    return line


def format_problems(report: dict, limit: int = 20, width: int = 60) -> str:
    """The failures and the files whose notes did not come back exactly (F1 < 1), at most ``limit`` each."""
    out = []
    imperfect = [r for r in report["results"] if r["error"] is None and r["f1"] < 1]
    for title, rows, text in (("failed", report["failed"], lambda r: r["error"]),
                              ("note F1 below 1", imperfect, lambda r: f"F1 {r['f1']:.4f}")):
        if rows:
            out.append(f"{title}:")
            out += [f"  {_short(r['path'], width)}: {text(r)}" for r in rows[:limit]]
            if len(rows) > limit:
                out.append(f"  ... and {len(rows) - limit} more (--verbose lists every file, --json writes them all)")
    return "\n".join(out)


def format_report(report: dict, width: int = 60, verbose: bool = True) -> str:
    """The summary and the problems; with ``verbose`` the table of every file first."""
    problems = format_problems(report, width=width)
    parts = [format_table(report, width)] if verbose else [problems] if problems else []
    return "\n\n".join([*parts, format_summary(report)])


def write_json(report: dict, path: str | os.PathLike) -> None:
    atomic.write_json(path, report)
