"""Snap a `Score` to the step grid: the shared first move of both encoding paths.

Times become integer steps (``steps_per_beat`` per quarter note). Onsets and ends are rounded
to the nearest step (halves up), a note's duration is ``end_step - onset_step`` clipped to
``[1, max_duration]``; notes outside the pitch range are dropped, drums are dropped in the
instrument-free (blog) scheme, long silences are shortened to ``max_silence``. Everything that
is dropped or changed is counted in ``stats``: nothing is lost silently.

Duplicates (two notes of one instrument on the same pitch and step) are *not* merged here: the
sparse path merges them by construction (one cell per instrument, step and pitch) and the direct
path by sorting, which is what lets the tests compare the two paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..midi import Score
from .config import EncodingConfig


@dataclass
class QuantisedScore:
    """Notes and tempo changes on the step grid (notes unsorted, duplicates kept)."""

    instrument: np.ndarray  # int16: program, 128 = drums; 0 for every note in the blog scheme; with parts: the part
    pitch: np.ndarray  # int16
    onset: np.ndarray  # int64 step
    duration: np.ndarray  # int64 steps, 1..max_duration
    tempo_step: np.ndarray  # int64 steps, strictly increasing, first is 0 (empty if no tempo)
    tempo_bin: np.ndarray  # int64 index into config.tempo_values()
    config: EncodingConfig
    stats: dict = field(default_factory=dict)
    velocity: np.ndarray | None = None  # int64 velocity bin per note (velocity_bins > 0), else None
    part_programs: np.ndarray | None = None  # with parts: the instrument key of each part, else None
    part_names: tuple[str, ...] = ()  # with parts: the source's name of each part ("" unnamed)

    @property
    def length(self) -> int:
        """The step at which the last note ends (0 for no notes)."""
        return int((self.onset + self.duration).max(initial=0))


def ticks_to_steps(ticks: np.ndarray, tpq: int, steps_per_beat: int) -> np.ndarray:
    """Nearest step for each tick, halves rounded up; exact integer arithmetic."""
    return (2 * ticks * steps_per_beat + tpq) // (2 * tpq)


def quantise(score: Score, config: EncodingConfig) -> QuantisedScore:
    cfg = config
    tpq, spb = score.ticks_per_quarter, cfg.steps_per_beat
    stats = {"notes": int(score.n_notes), "dropped_pitch_range": 0}
    start, end, pitch = score.start, score.end, score.pitch
    instrument = score.instrument if cfg.instruments else np.zeros(score.n_notes, np.int16)

    keep = None
    if cfg.min_pitch > 0 or cfg.max_pitch < 127:
        keep = (pitch >= cfg.min_pitch) & (pitch <= cfg.max_pitch)
        stats["dropped_pitch_range"] = int(len(keep) - np.count_nonzero(keep))
    if not cfg.instruments:
        drums = score.is_drum if keep is None else score.is_drum & keep
        stats["dropped_drums"] = int(np.count_nonzero(drums))
        if stats["dropped_drums"]:
            keep = ~score.is_drum if keep is None else keep & ~score.is_drum
    velocity, part = score.velocity, score.part
    if keep is not None and not keep.all():
        start, end, pitch, instrument = start[keep], end[keep], pitch[keep], instrument[keep]
        velocity, part = velocity[keep], part[keep]
    vel_bin = cfg.velocity_bin(velocity) if cfg.velocity_bins else None
    part_programs, part_names = None, ()
    if cfg.parts:
        instrument, part_programs, part_names = _parts(score, part, instrument, cfg, stats)

    onset = ticks_to_steps(start, tpq, spb)
    raw = ticks_to_steps(end, tpq, spb) - onset
    stats["clipped_durations"] = int(np.count_nonzero(raw > cfg.max_duration))
    duration = np.clip(raw, 1, cfg.max_duration)

    if cfg.tempo:
        tempo_step, tempo_bin = _tempo_events(score, cfg, onset)
    else:
        tempo_step = tempo_bin = _EMPTY

    stats["shortened_silences"] = 0
    if cfg.max_silence is not None and len(onset) and _has_long_gap(onset, cfg.max_silence):
        onset, tempo_step, n = _shorten_silences(onset, tempo_step, cfg.max_silence)
        stats["shortened_silences"] = n
    return QuantisedScore(instrument, pitch, onset, duration, tempo_step, tempo_bin, cfg, stats,
                          vel_bin, part_programs, part_names)


def _parts(score: Score, part: np.ndarray, instrument: np.ndarray, cfg: EncodingConfig, stats: dict):
    """Parts numbered 0.. (a source part that mixes instruments: one part per instrument), the
    instrument of each and its name. Past ``max_parts``, a part joins the first kept part of its
    instrument, else the last kept part (its notes then change instrument: both counted)."""
    key = part.astype(np.int64) * 129 + instrument
    keys, index = np.unique(key, return_inverse=True)
    index = index.reshape(-1)
    src, programs = keys // 129, (keys % 129).astype(np.int16)
    names = tuple(score.part_names[k] if k < len(score.part_names) else "" for k in src.tolist())
    stats["merged_parts"] = stats["parts_changed_instrument"] = 0
    mp = cfg.max_parts
    if len(keys) > mp:
        target = np.arange(len(keys))
        for j in range(mp, len(keys)):  # rare (a file of more tracks than max_parts): a short loop
            same = np.flatnonzero(programs[:mp] == programs[j])
            target[j] = same[0] if len(same) else mp - 1
            if not len(same):
                stats["parts_changed_instrument"] += int(np.count_nonzero(index == j))
        stats["merged_parts"] = len(keys) - mp
        index, programs, names = target[index], programs[:mp], names[:mp]
    return index.astype(np.int16), programs, names


_EMPTY = np.zeros(0, np.int64)
_ZERO = np.zeros(1, np.int64)


def _tempo_events(score: Score, cfg: EncodingConfig, onset: np.ndarray):
    """Tempo in force at step 0, then each change of tempo token up to the last onset."""
    ticks = score.tempo_ticks
    if len(ticks) == 0 or (len(ticks) == 1 and ticks[0] == 0):  # the common case: one tempo
        qpm = score.tempo_qpm if len(ticks) else (120.0,)
        return _ZERO, cfg.tempo_bin(qpm)
    steps = ticks_to_steps(ticks, score.ticks_per_quarter, cfg.steps_per_beat)
    # MIDI's default tempo is 120 qpm until the first tempo event.
    steps = np.concatenate([_ZERO, steps])
    bins = np.concatenate([cfg.tempo_bin([120.0]), cfg.tempo_bin(score.tempo_qpm)])
    last = int(onset.max(initial=0))
    # Several events on one step: the last one wins. Then keep only real changes.
    final = np.append(steps[1:] != steps[:-1], True) & (steps <= last)
    steps, bins = steps[final], bins[final]
    change = np.append(True, bins[1:] != bins[:-1])
    return steps[change].astype(np.int64), bins[change].astype(np.int64)


def _has_long_gap(onset: np.ndarray, max_silence: int) -> bool:
    # Tempo steps lie between onsets, so they can only split gaps: onsets alone decide.
    if onset.max() <= max_silence:
        return False
    s = np.sort(onset)
    return bool(s[0] > max_silence or np.diff(s).max() > max_silence)


def _shorten_silences(onset: np.ndarray, tempo_step: np.ndarray, max_silence: int):
    """Shorten every gap between consecutive event steps (and before the first) to max_silence."""
    steps = np.unique(np.concatenate([_ZERO, onset, tempo_step]))
    gaps = np.diff(steps)
    long = gaps > max_silence
    new_steps = np.concatenate([_ZERO, np.cumsum(np.minimum(gaps, max_silence))])
    remap = lambda x: new_steps[np.searchsorted(steps, x)]  # noqa: E731
    return remap(onset), remap(tempo_step), int(np.count_nonzero(long))
