"""The tokens that open a note, before its ``n{pitch}``: instrument, part and velocity tokens.

Shared by both encoders (`index.encode_position`, `index.encode_notes`) and the decoder, all
vectorised. Per note, in this order, each only where needed:

- with ``parts``, the part's *declaration* ``i{program}`` before its very first part token;
- the *opener*: ``p{part}`` (with ``parts``) or ``i{program}``/``drums`` (with ``instruments``)
  when the note's part (instrument) differs from the previous note's;
- ``v{bin}`` (with ``velocity_bins``) when the note's velocity bin differs from the previous
  note's *of the same part* (instrument; in the instrument-free scheme, of the piece): a part's
  first note always has one.

So a chorale's first notes read ``i0 p0 v5 n67 d4 i0 p1 v5 n62 d4 ...`` and later ones ``p0 n69 d2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .vocab import K_INSTR, K_NOTE, K_PART, K_VEL

if TYPE_CHECKING:
    from .config import EncodingConfig
    from .vocab import Vocab


@dataclass
class Marks:
    """Per note: ``decl`` (declare the part), ``change`` (write the opener), ``vel`` (write the
    velocity); None where the config has no such token."""

    decl: np.ndarray | None
    change: np.ndarray | None
    vel: np.ndarray | None

    def count(self) -> np.ndarray | int:
        """Tokens before each note's ``n`` token."""
        return sum((m.astype(np.int64) for m in (self.decl, self.change, self.vel) if m is not None), 0)


def _first_of_runs(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), bool)
    out[:1] = True
    np.not_equal(values[1:], values[:-1], out=out[1:])
    return out


def opener_marks(cfg: EncodingConfig, key: np.ndarray, velocity: np.ndarray | None) -> Marks:
    """Which opening tokens each note (in token order) gets; ``key`` is its instrument or part."""
    decl = change = vel = None
    if cfg.instruments:
        change = _first_of_runs(key)
        if cfg.parts:
            decl = np.zeros(len(key), bool)
            decl[np.unique(key, return_index=True)[1]] = True
    if cfg.velocity_bins and velocity is not None:
        order = np.argsort(key, kind="stable")  # each part's notes, in order
        k, v = key[order], velocity[order]
        first = _first_of_runs(v)
        first[1:] |= k[1:] != k[:-1]
        vel = np.empty(len(key), bool)
        vel[order] = first
    return Marks(decl, change, vel)


def write_openers(ids: np.ndarray, o: np.ndarray, key: np.ndarray, velocity: np.ndarray | None, marks: Marks,
                  vocab: Vocab, part_programs: np.ndarray | None) -> np.ndarray:
    """Write each note's opening tokens from its first position ``o``; returns its ``n`` token's position."""
    if marks.decl is not None:
        programs = np.zeros(0, np.int64) if part_programs is None else np.asarray(part_programs, np.int64)
        k = key[marks.decl]
        programs = np.append(programs, np.zeros(max(0, int(k.max(initial=-1)) + 1 - len(programs)), np.int64))
        ids[o[marks.decl]] = vocab.instr_offset + programs[k]
        o = o + marks.decl
    if marks.change is not None:
        ids[o[marks.change]] = (vocab.part_offset if vocab.config.parts else vocab.instr_offset) + key[marks.change]
        o = o + marks.change
    if marks.vel is not None:
        ids[o[marks.vel]] = vocab.vel_offset + velocity[marks.vel]
        o = o + marks.vel
    return o


@dataclass
class Openers:
    """What the decoder reads off the opening tokens (`decode_openers`)."""

    used: np.ndarray  # per token: an opening token that opens a note
    last_opener: np.ndarray  # per token: position of the last instrument (part) token so far, -1 none
    part_programs: np.ndarray | None  # with parts: each part's declared instrument (0 if undeclared)
    kind: np.ndarray
    value: np.ndarray
    vel_ok: np.ndarray  # per token: a velocity token right before a note

    def row_velocity(self, rows: np.ndarray, r_note: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The velocity bin of each row (-1 on other rows and on notes no velocity token reached):
        the last velocity token before the note among those of its part (instrument)."""
        out = np.full(len(rows), -1, np.int64)
        vpos = np.flatnonzero(self.vel_ok)
        npos = rows[r_note]
        if not len(npos) or not len(vpos):
            return out
        lo = self.last_opener[vpos]
        vkey = np.where(lo >= 0, self.value[np.maximum(lo, 0)], 0) if self.last_opener is not None else 0 * vpos
        pos = np.concatenate([vpos, npos])
        keys = np.concatenate([vkey, key[r_note].astype(np.int64)])
        vals = np.concatenate([self.value[vpos], np.full(len(npos), -1, np.int64)])
        order = np.lexsort((pos, keys))
        k = keys[order]
        idx = np.arange(len(order))
        last = np.maximum.accumulate(np.where(order < len(vpos), idx, -1))
        group_start = np.maximum.accumulate(np.where(_first_of_runs(k), idx, 0))
        got = np.where(last >= group_start, vals[order][np.maximum(last, 0)], -1)
        per = np.empty(len(order), np.int64)
        per[order] = got
        out[r_note] = per[len(vpos):]
        return out


def decode_openers(kind: np.ndarray, value: np.ndarray, nxt: np.ndarray, cfg: EncodingConfig) -> Openers:
    """The opening tokens of a base-id sequence (``kind``/``value`` per token, ``nxt`` the next kind)."""
    n = len(kind)
    vel_ok = (kind == K_VEL) & (nxt == K_NOTE)
    opens = (nxt == K_NOTE) | np.append(vel_ok[1:], False)  # the next token is a note, or its velocity
    opener = K_PART if cfg.parts else K_INSTR
    used = vel_ok | ((kind == opener) & opens)
    programs = None
    if cfg.parts:
        decl = np.flatnonzero((kind == K_INSTR) & (nxt == K_PART))
        used[decl] = True
        parts = value[decl + 1]
        n_parts = int(max(value[kind == K_PART].max(initial=-1), parts.max(initial=-1))) + 1
        programs = np.zeros(n_parts, np.int16)
        first_parts, first = np.unique(parts, return_index=True)
        programs[first_parts] = value[decl[first]]
    pos = np.where(kind == opener, np.arange(n), -1)
    last = np.maximum.accumulate(pos) if n else pos
    return Openers(used, last, programs, kind, value, vel_ok)
