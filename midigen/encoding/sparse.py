"""Step 1 of the blog's encoding: the *sparse score*.

A dense array over (instrument, time step, pitch) whose value is the duration in steps of a note
that starts there (0 = no note starts here). It is "sparse" because nearly every cell is 0: a
four-minute piece at 4 steps per beat is ~2,000 steps x 128 pitches per instrument for a few
thousand notes. That is why the production path (`PositionScore.from_quantised`) never builds it;
it is here for teaching, plotting and for testing that both paths give identical tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..midi import Score
from .config import EncodingConfig
from .position import TEMPO, PositionScore, SortedNotes, layout, sorted_notes
from .quantise import quantise


@dataclass
class SparseScore:
    """``array[i, t, p]`` = duration of the note of ``instruments[i]`` at step ``t``, pitch ``p``.

    ``tempo[t]`` is the tempo bin that starts at step ``t`` (-1 = no change there). With parts,
    ``instruments`` are the parts (``part_programs``: their instruments); with velocity bins,
    ``velocity`` is a second array of the same shape: the velocity bin of each note.
    """

    array: np.ndarray  # (n_instruments, n_steps, 128), int16
    instruments: np.ndarray  # instrument key of each row of `array`
    tempo: np.ndarray  # (n_steps,) int64
    config: EncodingConfig
    stats: dict
    velocity: np.ndarray | None = None
    part_programs: np.ndarray | None = None
    part_names: tuple[str, ...] = ()

    @property
    def n_steps(self) -> int:
        return self.array.shape[1]

    @classmethod
    def from_score(cls, score: Score, config: EncodingConfig) -> SparseScore:
        q = quantise(score, config)
        instruments, row = np.unique(q.instrument, return_inverse=True)
        n_steps = max(q.length, int(q.tempo_step.max(initial=0)) + 1, 1)
        array = np.zeros((len(instruments), n_steps, 128), np.int16)
        # Two notes in one cell (same instrument, step and pitch) merge: the longest wins.
        np.maximum.at(array, (row, q.onset, q.pitch), q.duration.astype(np.int16))
        tempo = np.full(n_steps, -1, np.int64)
        tempo[q.tempo_step] = q.tempo_bin
        stats = dict(q.stats)
        stats["merged_duplicates"] = int(len(q.onset) - np.count_nonzero(array))
        stats["encoded_notes"] = int(np.count_nonzero(array))
        velocity = None
        if q.velocity is not None:  # the velocity of the note that wins each cell, as the direct path
            sn = sorted_notes(q)
            velocity = np.zeros_like(array)
            velocity[np.searchsorted(instruments, sn.instrument), sn.onset, sn.pitch] = sn.velocity
        return cls(array, instruments, tempo, config, stats, velocity, q.part_programs, q.part_names)

    def to_position(self) -> PositionScore:
        """Read the notes off the array in (step, instrument, pitch) order, then lay out rows."""
        step, row, pitch = np.nonzero(self.array.transpose(1, 0, 2))  # C order = sorted
        dur = self.array[row, step, pitch].astype(np.int64)
        t = np.flatnonzero(self.tempo >= 0)
        length = int((step + dur).max(initial=0))
        vel = None if self.velocity is None else self.velocity[row, step, pitch].astype(np.int64)
        return layout(SortedNotes(
            step.astype(np.int64), self.instruments[row].astype(np.int16), pitch.astype(np.int16),
            dur, t.astype(np.int64), self.tempo[t], length, self.config, dict(self.stats),
            vel, self.part_programs, self.part_names,
        ))

    @classmethod
    def from_position(cls, pos: PositionScore) -> SparseScore:
        """The decode direction: place each note row of a position score in the array."""
        note = pos.is_note
        instruments, row = np.unique(pos.instrument[note], return_inverse=True)
        n_steps = max(pos.length, 1)
        array = np.zeros((len(instruments), n_steps, 128), np.int16)
        np.maximum.at(array, (row, pos.step[note], pos.pitch[note]), pos.value[note].astype(np.int16))
        tempo = np.full(n_steps, -1, np.int64)
        t = pos.pitch == TEMPO
        tempo[np.minimum(pos.step[t], n_steps - 1)] = pos.value[t]
        velocity = None
        if pos.velocity is not None:
            velocity = np.zeros_like(array)
            velocity[row, pos.step[note], pos.pitch[note]] = np.maximum(pos.velocity[note], 0)
        return cls(array, instruments, tempo, pos.config, dict(pos.stats), velocity, pos.part_programs,
                   pos.part_names)

    def to_score(self) -> Score:
        return self.to_position().to_score()
