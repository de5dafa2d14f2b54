"""Step 2 of the blog's encoding: the *position score*.

The compact form of a score: one row per event, in time order. A note is ``(pitch, duration)``;
a gap of silence before the next time step is ``(-1, gap)``; the blog's example

    (1, 4) (-1, 1) (3, 2) (-1, 5) (2, 2) (3, 2) (-1, 2)

is exactly the rows of `PositionScore.blog_rows`. Past the blog, each row also carries its
``instrument`` (a program, 128 for drums) and tempo changes are rows ``(-2, tempo_bin)`` at the
start of their step. Gaps longer than ``max_duration`` become several gap rows.

`from_quantised` is the production path: it goes from note arrays to rows with a sort and
vectorised offsets, never building the dense sparse score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..instruments import instrument_name
from ..midi import DRUMS, Score
from .config import EncodingConfig
from .quantise import QuantisedScore, quantise

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

GAP = -1
TEMPO = -2


@dataclass
class PositionScore:
    """Rows of events. ``pitch`` >= 0 is a note, `GAP` a gap, `TEMPO` a tempo change.

    ``value`` is the note's duration, the gap's length, or the tempo bin; ``instrument`` is the
    note's instrument key (-1 on other rows), or its part with ``config.parts`` (``part_programs``
    then gives each part's instrument key); ``velocity`` each note's velocity bin; ``step`` is the
    time step a row belongs to (for a gap: the step it leaves). ``length`` is the step at which the piece ends.
    """

    pitch: np.ndarray
    value: np.ndarray
    instrument: np.ndarray
    step: np.ndarray
    length: int
    config: EncodingConfig
    stats: dict
    velocity: np.ndarray | None = None  # velocity bin of each row (-1 off notes); None without velocity bins
    part_programs: np.ndarray | None = None  # with parts (``instrument`` is then the part): their instruments
    part_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.pitch)

    @property
    def blog_rows(self) -> np.ndarray:
        """``(pitch, duration)`` / ``(-1, gap)`` pairs as in the blog (tempo rows included)."""
        return np.stack([self.pitch, self.value], axis=1)

    @property
    def is_note(self) -> np.ndarray:
        return self.pitch >= 0

    # ---------------------------------------------------------------- encode
    @classmethod
    def from_score(cls, score: Score, config: EncodingConfig) -> PositionScore:
        return cls.from_quantised(quantise(score, config))

    @classmethod
    def from_quantised(cls, q: QuantisedScore) -> PositionScore:
        """Sort notes by (step, instrument, pitch), merge duplicates (longest wins), lay out rows."""
        return layout(sorted_notes(q))

    # ---------------------------------------------------------------- decode
    def to_score(self, ticks_per_quarter: int | None = None) -> Score:
        """Back to a `Score` (notes on the grid, tempo from the tempo rows, 4/4)."""
        cfg = self.config
        spb = cfg.steps_per_beat
        tpq = ticks_per_quarter or (480 if 480 % spb == 0 else 120 * spb)
        note = np.flatnonzero(self.is_note)
        # a sampled sequence may repeat a note (same instrument, pitch and step): merge, as the
        # encoder does, keeping the longest (a synthesizer would play every copy)
        key = (self.step[note] * 129 + self.instrument[note]) * 128 + self.pitch[note]
        order = np.lexsort((-self.value[note], key))
        keep = np.ones(len(order), bool)
        keep[1:] = key[order][1:] != key[order][:-1]
        note = note[np.sort(order[keep])]
        inst = part = self.instrument[note]
        if cfg.parts:
            programs = self.part_programs if self.part_programs is not None else np.zeros(0, np.int16)
            programs = np.append(programs, np.zeros(max(0, int(part.max(initial=-1)) + 1 - len(programs)), np.int16))
            inst = programs[part]
        velocity = cfg.velocity
        if cfg.velocity_bins and self.velocity is not None:
            vb = self.velocity[note]
            velocity = np.where(vb >= 0, cfg.velocity_values()[np.maximum(vb, 0)], cfg.velocity)
        onset = self.step[note]
        start = onset * tpq // spb
        end = (onset + self.value[note]) * tpq // spb
        t = self.pitch == TEMPO
        if t.any():
            tempos = np.stack([self.step[t] * tpq // spb, cfg.tempo_values()[self.value[t]]], 1)
        else:
            tempos = ((0, 120.0),)
        return Score.from_notes(
            self.pitch[note],
            start,
            end,
            program=np.where(inst == DRUMS, 0, inst),
            is_drum=inst == DRUMS,
            velocity=velocity,
            ticks_per_quarter=tpq,
            tempos=tempos,
            part=part if cfg.parts else None,
            part_names=self.part_names or _default_names(self.part_programs if cfg.parts else None),
        )


def _default_names(programs: np.ndarray | None) -> tuple[str, ...]:
    if programs is None:
        return ()
    return tuple(f"Part {k + 1} ({instrument_name(int(p))})" for k, p in enumerate(programs.tolist()))


@dataclass
class SortedNotes:
    """Notes sorted by (step, instrument, pitch) without duplicates, and the tempo events.

    What both encoders start from (`layout` to rows, `index.encode_notes` straight to ids):
    ``onset`` (steps), ``instrument`` (program, 128 = drums), ``pitch``, ``duration`` (steps),
    ``tempo_step``/``tempo_bin`` (tempo changes), ``length`` (the step at which the last note
    ends), the ``config`` they were made under and the encoding ``stats`` so far.
    """

    onset: np.ndarray
    instrument: np.ndarray
    pitch: np.ndarray
    duration: np.ndarray
    tempo_step: np.ndarray
    tempo_bin: np.ndarray
    length: int
    config: EncodingConfig
    stats: dict
    velocity: np.ndarray | None = None  # velocity bin per note (velocity_bins > 0)
    part_programs: np.ndarray | None = None  # with parts (``instrument`` is the part): each part's instrument
    part_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.onset)


def sorted_notes(q: QuantisedScore) -> SortedNotes:
    """Notes sorted by (step, instrument, pitch), duplicates merged (the longest wins)."""
    # One int64 sort key: (onset, instrument, pitch, longest duration first).
    maxd = q.config.max_duration
    key = ((q.onset * 129 + q.instrument) * 128 + q.pitch) * (maxd + 1) + (maxd - q.duration)
    order = np.argsort(key, kind="stable")
    cell = key[order] // (maxd + 1)
    first = np.empty(len(cell), bool)
    first[:1] = True
    np.not_equal(cell[1:], cell[:-1], out=first[1:])
    stats = dict(q.stats)
    n = int(np.count_nonzero(first))
    stats["merged_duplicates"] = len(first) - n
    if n < len(first):
        order = order[first]
    onset = q.onset[order]
    stats["encoded_notes"] = int(len(onset))
    return SortedNotes(onset, q.instrument[order], q.pitch[order], q.duration[order], q.tempo_step, q.tempo_bin,
                       q.length, q.config, stats, None if q.velocity is None else q.velocity[order],
                       q.part_programs, q.part_names)


def layout(notes: SortedNotes) -> PositionScore:
    """Rows from sorted notes (`SortedNotes`) and their tempo events.

    Each time step k holds, in order: its tempo row (if any), its note rows, then the gap rows
    that lead to the next step (or to the end of the piece). A silence before the first step is
    written as gap rows at the very start. Offsets are computed with cumsum, not a Python loop;
    this runs once per file of a corpus, so it also avoids numpy calls it does not need.
    """
    onset, inst, pitch, dur = notes.onset, notes.instrument, notes.pitch, notes.duration
    tempo_step, tempo_bin, length = notes.tempo_step, notes.tempo_bin, notes.length
    cfg, stats = notes.config, notes.stats
    maxd = cfg.max_duration
    n = len(onset)
    new = np.empty(n, bool)
    new[:1] = True
    np.not_equal(onset[1:], onset[:-1], out=new[1:])
    steps = onset[new]
    if len(tempo_step) == 0 or (len(tempo_step) == 1 and len(steps) and tempo_step[0] == steps[0]):
        si_note = np.cumsum(new) - 1  # common case: tempo events only on note steps
    else:
        steps = np.union1d(steps, tempo_step)
        si_note = np.searchsorted(steps, onset)
    if len(steps) == 0:
        steps = _ZERO
    n_steps = len(steps)
    end = max(int(length), int(steps[-1]))
    lead = int(steps[0])  # silence before the first event
    gaps = np.empty(n_steps, np.int64)  # gap after each step
    np.subtract(steps[1:], steps[:-1], out=gaps[:-1])
    gaps[-1] = end - steps[-1]
    simple_gaps = int(gaps.max()) <= maxd  # every gap fits one row
    n_gap_rows = 1 if simple_gaps else -(-gaps // maxd)
    lead_rows = -(-lead // maxd)

    n_notes_at = np.bincount(si_note, minlength=n_steps)
    has_tempo = np.zeros(n_steps, np.int64)
    si_tempo = np.searchsorted(steps, tempo_step)
    has_tempo[si_tempo] = 1
    per_step = has_tempo + n_notes_at + n_gap_rows
    csum = np.cumsum(per_step)
    base = csum - per_step + lead_rows  # first row of each step
    total = lead_rows + int(csum[-1])

    P = np.empty(total, np.int16)
    V = np.empty(total, np.int64)
    Ins = np.full(total, -1, np.int16)
    S = np.empty(total, np.int64)

    if lead_rows:  # leading silence
        P[:lead_rows] = GAP
        V[:lead_rows] = _split_gap(np.array([lead]), np.array([lead_rows]), maxd)
        S[:lead_rows] = 0
    # tempo rows
    r = base[si_tempo]
    P[r], V[r], S[r] = TEMPO, tempo_bin, tempo_step
    # note rows: rank within the step = index - index of the step's first note
    first_note = np.cumsum(n_notes_at) - n_notes_at
    r = (base + has_tempo - first_note)[si_note] + np.arange(n)
    P[r], V[r], Ins[r], S[r] = pitch, dur, inst, onset
    vel = None
    if notes.velocity is not None:
        vel = np.full(total, -1, np.int64)
        vel[r] = notes.velocity
    # gap rows: after the step's notes
    if simple_gaps:
        r = csum - 1 + lead_rows
        P[r], V[r], S[r] = GAP, gaps, steps
    else:
        g_steps = np.repeat(np.arange(n_steps), n_gap_rows)
        within = np.arange(len(g_steps)) - np.repeat(np.cumsum(n_gap_rows) - n_gap_rows, n_gap_rows)
        r = (base + has_tempo + n_notes_at)[g_steps] + within
        P[r] = GAP
        V[r] = _split_gap(gaps, n_gap_rows, maxd)
        S[r] = steps[g_steps]
    return PositionScore(P, V, Ins, S, end, cfg, stats, vel, notes.part_programs, notes.part_names)


_ZERO = np.zeros(1, np.int64)


def _split_gap(gaps: ArrayLike, n_rows: ArrayLike, maxd: int) -> np.ndarray:
    """Each gap as ``n_rows`` pieces: ``maxd`` each, the last one the remainder."""
    gaps, n_rows = np.asarray(gaps), np.asarray(n_rows)
    rep = np.repeat(gaps, n_rows)
    ends = np.cumsum(n_rows)
    within = np.arange(len(rep)) - np.repeat(ends - n_rows, n_rows)
    last = within == np.repeat(n_rows - 1, n_rows)
    return np.where(last, rep - (np.repeat(n_rows, n_rows) - 1) * maxd, maxd)
