"""What is sounding at each token: the state a model would otherwise have to add up itself.

A note's length is written once, at its onset (``n60 d4``); the gaps that follow say how time
moves on. To keep a voice legato, the next gap must land exactly where the first sounding note
ends, and the next time step must give a new note to the parts that just fell silent and to no
other. The tokens hold all of it, but a model has to sum durations and gaps across many tokens to
see it, and our chorale model got a few joins in a hundred wrong (a one-step rest or overlap in a
voice), which is what makes its voices unsteady. So the tokenizer can tell it directly, for every
token, from the tokens up to and including it (never later ones, so it can be fed to a causal
model at training and at sampling time alike):

``parts``  which parts (``p0`` .. ``p31``) have a note sounding at the token's time step (with
           parts; 0 without),
``next``   the steps until the first sounding note ends (0: nothing sounds; at most 63),
``count``  how many notes sound (at most 31).

A note counts from its duration token on, and sounds at time step ``s`` while
``onset <= s < onset + duration``; a token's step is `Tokens.steps` (``<sep> dN`` still carries
the step it leaves, so at a gap's tokens the notes of the step before still sound). The three
are packed into one int64 per token (`pack` / `unpack`) so they travel as one array beside the
ids and steps; `midigen.GPT` embeds them when its config says ``sounding=True``.

`sounding` computes the state for whole arrays (a piece or a corpus split of many pieces, each
starting at ``<sos>``), vectorised; `SoundingTracker` keeps it token by token for a batch of
sequences being sampled. Both need base ids (a BPE tokenizer is refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .vocab import K_DUR, K_NOTE, K_PART, K_SOS

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .tokenizer import Tokenizer

PART_BITS = 32  # parts p0..p31 (EncodingConfig.max_parts is at most 32 ... parts beyond are not marked)
NEXT_SHIFT, NEXT_MAX = 32, 63
COUNT_SHIFT, COUNT_MAX = 38, 31
CHUNK_TOKENS = 1 << 21  # `sounding` works through a long split this many tokens (whole pieces) at a time


def pack(parts: ArrayLike, next_end: ArrayLike, count: ArrayLike) -> np.ndarray:
    """The three fields in one int64 (``next`` and ``count`` clipped to their maxima)."""
    parts = np.asarray(parts, np.int64) & ((1 << PART_BITS) - 1)
    nxt = np.clip(np.asarray(next_end, np.int64), 0, NEXT_MAX)
    cnt = np.clip(np.asarray(count, np.int64), 0, COUNT_MAX)
    return parts | (nxt << NEXT_SHIFT) | (cnt << COUNT_SHIFT)


def unpack(state: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(parts, next, count)`` of packed states (`pack`'s inverse)."""
    s = np.asarray(state, np.int64)
    return s & ((1 << PART_BITS) - 1), (s >> NEXT_SHIFT) & NEXT_MAX, (s >> COUNT_SHIFT) & COUNT_MAX


def _base_tables(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, bool]:
    if tokenizer.has_merges:
        raise ValueError("the sounding state needs base ids: a BPE tokenizer's merged ids hide the notes' durations "
                         "(train without --sounding, or on a corpus prepared without --bpe-vocab)")
    table = tokenizer.table
    return table.kind, table.value, bool(tokenizer.config.parts)


def sounding(ids: ArrayLike, steps: ArrayLike, tokenizer: Tokenizer) -> np.ndarray:
    """The packed sounding state of every token of ``ids`` (one piece or many back to back).

    Vectorised: each note is spread over the tokens it sounds at (`np.repeat`), which costs the
    total polyphony summed over tokens, a few times the length; long splits go in chunks of whole
    pieces."""
    ids = np.asarray(ids)
    steps = np.asarray(steps, np.int64)
    if len(ids) != len(steps):
        raise ValueError(f"ids and steps differ in length ({len(ids)} vs {len(steps)})")
    kind, value, parts = _base_tables(tokenizer)
    if len(ids) <= CHUNK_TOKENS:
        return _sounding(ids, steps, kind, value, parts)
    sos = np.flatnonzero(kind[ids] == K_SOS)
    cuts = [0]
    for s in sos[1:]:
        if s - cuts[-1] >= CHUNK_TOKENS:
            cuts.append(int(s))
    cuts.append(len(ids))
    chunks = zip(cuts[:-1], cuts[1:], strict=True)
    return np.concatenate([_sounding(ids[a:b], steps[a:b], kind, value, parts) for a, b in chunks])


def _sounding(ids: np.ndarray, steps: np.ndarray, kind_of: np.ndarray, value_of: np.ndarray, parts: bool
              ) -> np.ndarray:
    n = len(ids)
    if n == 0:
        return np.zeros(0, np.int64)
    kind, value = kind_of[ids], value_of[ids]
    piece = np.cumsum(kind == K_SOS)  # pieces start at <sos>; steps begin again at 0 there
    note = np.flatnonzero(kind[:-1] == K_NOTE)
    note = note[kind[note + 1] == K_DUR]  # (a note cut off before its duration has no length yet)
    known = note + 1  # the note's duration token: from here on its end is known
    end = steps[note] + value[note + 1]
    if parts:
        last_part = np.maximum.accumulate(np.where(kind == K_PART, np.arange(n), -1))[note]
        piece_start = np.maximum.accumulate(np.where(kind == K_SOS, np.arange(n), 0))[note]
        part = value[np.maximum(last_part, 0)]
        named = (last_part > piece_start) & (part < PART_BITS)  # (a part token of this piece)
        bit = np.where(named, np.left_shift(1, np.minimum(part, PART_BITS - 1)), 0).astype(np.int64)
    else:
        bit = np.zeros(len(note), np.int64)
    # the note sounds up to (not including) the first token of its piece whose step reaches its end
    span = int(steps.max()) + 2
    key = piece * span + steps  # non-decreasing: pieces in order, steps in order within a piece
    stop = np.maximum(np.searchsorted(key, piece[note] * span + end, side="left"), known + 1)
    lens = stop - known
    first = np.repeat(known - (np.cumsum(lens) - lens), lens)
    at = first + np.arange(int(lens.sum()))  # every (token, sounding note) pair
    which = np.repeat(np.arange(len(note)), lens)
    count = np.bincount(at, minlength=n)
    mask = np.zeros(n, np.int64)
    np.bitwise_or.at(mask, at, bit[which])
    first_end = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_end, at, end[which])
    next_end = np.where(count > 0, first_end - steps, 0)
    return pack(mask, next_end, count)


class SoundingTracker:
    """The sounding state of ``batch`` sequences, one token per row at a time (for sampling).

    ``push(ids, steps)`` takes each row's next base id and its time step and returns the rows'
    packed states; it gives what `sounding` gives for the whole sequences (the tests hold it to
    that). At most ``slots`` notes per row are kept sounding (the earliest to end make room)."""

    def __init__(self, tokenizer: Tokenizer, batch: int, slots: int = 64):
        self.kind, self.value, self.parts = _base_tables(tokenizer)
        self.ends = np.full((batch, slots), -1, np.int64)  # end step of each kept note (-1: free)
        self.bits = np.zeros((batch, slots), np.int64)
        self.part_bit = np.zeros(batch, np.int64)  # the current part's bit
        self.onset = np.full(batch, -1, np.int64)  # the step of a note whose duration comes next
        self.rows = np.arange(batch)

    def push(self, ids: ArrayLike, steps: ArrayLike) -> np.ndarray:
        ids, steps = np.asarray(ids), np.asarray(steps, np.int64)
        kind, value = self.kind[ids], self.value[ids]
        sos = kind == K_SOS
        self.ends[sos] = -1
        if self.parts:
            p = kind == K_PART
            self.part_bit[p] = np.where(value[p] < PART_BITS, np.left_shift(1, np.minimum(value[p], PART_BITS - 1)), 0)
        self.part_bit[sos] = 0
        ends_note = (kind == K_DUR) & (self.onset >= 0)
        if ends_note.any():
            r = self.rows[ends_note]
            slot = np.argmin(self.ends[r], axis=1)  # a free slot, or the note ending first
            self.ends[r, slot] = self.onset[r] + value[r]
            self.bits[r, slot] = self.part_bit[r]
        self.onset = np.where(kind == K_NOTE, steps, -1)
        on = self.ends > steps[:, None]
        mask = np.bitwise_or.reduce(np.where(on, self.bits, 0), axis=1)
        first_end = np.where(on, self.ends, np.iinfo(np.int64).max).min(axis=1)
        count = on.sum(1)
        return pack(mask, np.where(count > 0, first_end - steps, 0), count)

    def replay(self, ids: ArrayLike, steps: ArrayLike) -> np.ndarray:
        """Push the same sequence (a prompt) into every row; its states, shape ``(len(ids),)``."""
        ids, steps = np.asarray(ids), np.asarray(steps, np.int64)
        B = len(self.rows)
        return np.array([self.push(np.full(B, i), np.full(B, s))[0] for i, s in zip(ids, steps, strict=True)], np.int64)
