"""`midigen check`: does every file survive encode -> decode?

For each MIDI file: encode and decode it, then compare the decoded notes with the original
quantised to the grid, note by note. A note is (instrument, pitch, onset step, duration in steps
clipped to [1, max_duration]); notes that quantise onto the same instrument, pitch and onset count
once, with the longest duration. The reference quantisation below is written separately from the
encoder's (Python fractions here, integer numpy there), so a bug in one cannot hide in both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from . import atomic
from .encoding import EncodingConfig, Tokenizer
from .errors import MidiError
from .midi import DRUMS, Score, find_midi_files, read_midi


def reference_notes(score: Score, config: EncodingConfig) -> dict:
    """The original's notes on the grid: ``{(instrument, pitch, onset): duration}``."""
    spb, tpq, maxd = config.steps_per_beat, score.ticks_per_quarter, config.max_duration
    half = Fraction(1, 2)
    notes: dict = {}
    for prog, drum, pitch, start, end in zip(
        score.program.tolist(), score.is_drum.tolist(), score.pitch.tolist(),
        score.start.tolist(), score.end.tolist(),
    ):
        inst = (DRUMS if drum else prog) if config.instruments else 0
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
        score.instrument.tolist(), score.pitch.tolist(), score.start.tolist(), score.end.tolist()
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


def check_file(path, tokenizer: Tokenizer) -> FileResult:
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
    return FileResult(str(path), len(ref), len(toks), p, r, f, None, toks.stats)


def check(paths, config: EncodingConfig | None = None, progress: bool = True) -> dict:
    """Round-trip every MIDI file under ``paths``; returns the report as a dict."""
    from tqdm.auto import tqdm

    tokenizer = Tokenizer(config or EncodingConfig())
    files = find_midi_files(paths)
    results = [check_file(f, tokenizer) for f in tqdm(files, desc="check", unit="file", disable=not progress)]
    ok = [r for r in results if r.error is None]
    f1 = np.array([r.f1 for r in ok]) if ok else np.zeros(0)
    return {
        "files": len(results),
        "ok": len(ok),
        "failed": [{"path": r.path, "error": r.error} for r in results if r.error is not None],
        "note_f1_min": float(f1.min()) if len(f1) else None,
        "note_f1_mean": float(f1.mean()) if len(f1) else None,
        "notes": int(sum(r.notes for r in ok)),
        "tokens": int(sum(r.tokens for r in ok)),
        "encoding": tokenizer.config.to_dict(),
        "results": [asdict(r) for r in results],
    }


def format_report(report: dict, width: int = 60) -> str:
    lines = [f"{'file':<{width}} {'notes':>7} {'tokens':>7} {'F1':>7}  problem"]
    for r in report["results"]:
        name = r["path"] if len(r["path"]) <= width else "..." + r["path"][-(width - 3):]
        if r["error"]:
            lines.append(f"{name:<{width}} {'-':>7} {'-':>7} {'-':>7}  {r['error']}")
        else:
            lines.append(f"{name:<{width}} {r['notes']:>7} {r['tokens']:>7} {r['f1']:>7.4f}")
    f1min = "n/a" if report["note_f1_min"] is None else f"{report['note_f1_min']:.4f}"
    f1mean = "n/a" if report["note_f1_mean"] is None else f"{report['note_f1_mean']:.4f}"
    lines.append(
        f"\n{report['files']} files: {report['ok']} ok, {len(report['failed'])} failed; "
        f"{report['notes']} notes -> {report['tokens']} tokens; note F1 min {f1min}, mean {f1mean}"
    )
    return "\n".join(lines)


def write_json(report: dict, path) -> None:
    atomic.write_json(path, report)
