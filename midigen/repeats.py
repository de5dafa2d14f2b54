"""Which tokens of a piece belong to music heard earlier in it: the groups of a repetition-aware loss.

Memory should matter where music repeats beyond the local context. `repeat_groups` labels every
token of one piece (ids and time steps, as a prepared corpus or `Tokenizer.encode` gives them)
with one of four groups, so a likelihood can be split by them (`midigen.metrics.likelihood` with
``repeats=True``, `midigen evaluate --repeats`):

====================  ==========================================================================
``first_segment``     the token stands in its piece's first segment (positions 0..``context``):
                      no model has anything of the piece beyond this segment to remember
``novel``             later, and its bar was not heard before in the piece (or it is no bar's)
``repeat_near``       later, its bar was heard before, and the token's counterpart there lies in
                      the token's own segment: a model without memory sees it
``repeat_far``        later, its bar was heard before, and the counterpart lies in an earlier
                      segment: only a memory (XL, kNN) can bring it back
====================  ==========================================================================

Exactly, with ``L = beats_per_bar * steps_per_beat`` steps:

* **Bars.** Bar ``b`` is the time steps ``[b*L, (b+1)*L)``. The tokens carry no time signature, so
  bars are cut every ``beats_per_bar`` beats from the piece's start; in another metre (or after
  a pickup) they straddle barlines, which finds fewer repeats, never false ones.
* **A token belongs to** bar ``b`` when its time step (`Tokens.steps`) lies in it: the instrument,
  note and duration tokens of each note starting in the bar, the gap tokens ``<sep> dN`` leaving
  an action of the bar, and tempo tokens there. ``<sos>``, ``<eos>`` and padding belong to no bar.
  A merged (BPE) token keeps its action's step, so it belongs to that action's bar.
* **Content** of a bar: the set of its notes as (step - ``b*L``, instrument, pitch - the bar's
  lowest pitch, duration); drum notes keep their key (a drum key is a sound, not a pitch).
  Two bars are **equal up to transposition** when their contents are equal (compared by a 64-bit
  hash of the sorted note tuples). A bar with fewer than ``min_notes`` notes (default 2) is never
  a repeat: one note matches any other of its length up to transposition, which says nothing.
* **Earlier occurrence** of a bar: the latest earlier bar of the piece with equal content. Its
  distance ``d`` is the number of tokens between the two bars' first note tokens; the
  **counterpart** of a token at position ``i`` is position ``i - d`` (the same token of the earlier
  bar, where the two bars' tokens line up; an instrument token one has and the other not shifts
  them by one).
* **Segments** are those of the evaluation (the ``contiguous`` batcher, ``context`` tokens each):
  the target at position ``i >= 1`` is scored in segment ``(i - 1) // context``, whose inputs
  start at position ``context * ((i - 1) // context)``. ``repeat_near``: the counterpart is at or
  after that start; ``repeat_far``: before it.

Numpy only (no torch), vectorised over the tokens and bars of a piece.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .encoding.openers import decode_openers
from .encoding.tokenizer import SPECIAL
from .encoding.vocab import K_DUR, K_NOTE

if TYPE_CHECKING:
    from .encoding.tokenizer import Tokenizer

GROUPS = ("first_segment", "novel", "repeat_near", "repeat_far")
FIRST_SEGMENT, NOVEL, REPEAT_NEAR, REPEAT_FAR = range(4)
DRUMS = 128  # the instrument value of the ``drums`` token
_P = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling hash


def bar_notes(ids: ArrayLike, steps: ArrayLike, tokenizer: Tokenizer, bar_steps: int) -> dict:
    """The notes of a piece's tokens: ``bar``, ``step`` (within its bar), ``instrument`` (-1 in an
    instrument-free encoding, `DRUMS` for drums), ``pitch``, ``duration`` and ``token`` (the
    position of its note token in ``ids``), one entry per note, in token order."""
    ids = np.asarray(ids, np.int64)
    base = tokenizer.to_base(ids)
    bsteps = np.repeat(np.asarray(steps, np.int64), tokenizer.lengths[ids])
    kind, value = tokenizer.table.kind[base], tokenizer.table.value[base]
    note = np.flatnonzero(kind == K_NOTE)
    nxt = np.minimum(note + 1, len(base) - 1)
    duration = np.where(kind[nxt] == K_DUR, value[nxt], 0)
    # the instrument of each note: the last instrument token's, or with parts its part's declared one
    openers = decode_openers(kind, value, np.append(kind[1:], -1), tokenizer.config)
    last = openers.last_opener[note]
    instrument = np.where(last >= 0, value[np.maximum(last, 0)], -1)
    if openers.part_programs is not None and len(openers.part_programs):
        instrument = np.where(instrument >= 0, openers.part_programs[np.maximum(instrument, 0)], -1)
    step = bsteps[note]
    token = np.repeat(np.arange(len(ids)), tokenizer.lengths[ids])[note]
    return {"bar": step // bar_steps, "step": step % bar_steps, "instrument": instrument,
            "pitch": value[note], "duration": duration, "token": token}


def bar_hashes(notes: dict, min_notes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(bars, hashes)``: each bar that has notes (ascending) and the hash of its content, equal
    for bars equal up to transposition; bars of fewer than ``min_notes`` notes get 0 (no content)."""
    bar, step, inst, pitch, dur = (notes[k] for k in ("bar", "step", "instrument", "pitch", "duration"))
    if not len(bar):
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    bars, which, count = np.unique(bar, return_inverse=True, return_counts=True)
    drum = inst == DRUMS
    lowest = np.full(len(bars), 1 << 20, np.int64)
    np.minimum.at(lowest, which[~drum], pitch[~drum])
    rel = np.where(drum, pitch + 256, pitch - lowest[which])  # drum keys apart from any interval
    # one code per note (each field within its range), sorted within the bar: a set, in one order
    code = (((step * 130 + inst + 1) * 512 + rel) * 65536 + dur).astype(np.uint64)
    order = np.lexsort((code, which))
    code, which_sorted = code[order], which[order]
    rank = np.arange(len(code)) - np.repeat(np.cumsum(count) - count, count)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps: a polynomial hash mod 2**64
        powers = np.cumprod(np.full(int(count.max()), _P, np.uint64))
        mixed = (code * np.uint64(0xBF58476D1CE4E5B9) + np.uint64(1)) * powers[rank]
        h = np.zeros(len(bars), np.uint64)
        np.add.at(h, which_sorted, mixed)
        h = h * np.uint64(31) + count.astype(np.uint64)
    h[h == 0] = 1
    h[count < min_notes] = 0
    return bars, h


def repeat_groups(ids: ArrayLike, steps: ArrayLike, tokenizer: Tokenizer, context: int, beats_per_bar: int = 4,
                  min_notes: int = 2, return_distance: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The group (`GROUPS`: 0..3) of every token of one piece; see the module docstring.

    ``ids``, ``steps``: the piece's token ids (base or merged, as ``tokenizer`` reads them) and
    their time steps, from ``<sos>`` to ``<eos>``. ``context``: the segment length of the
    evaluation. ``return_distance=True`` also returns each token's distance ``d`` to its earlier
    occurrence (0 where its bar is no repeat).
    """
    ids = np.asarray(ids, np.int64)
    steps = np.asarray(steps, np.int64)
    if len(ids) != len(steps):
        raise ValueError(f"ids and steps differ in length ({len(ids)} vs {len(steps)})")
    if context < 1:
        raise ValueError(f"context must be >= 1 token, got {context}")
    if len(steps) > 1 and (np.diff(steps) < 0).any():
        raise ValueError("time steps go backwards: these are not one piece's tokens in order")
    n = len(ids)
    L = beats_per_bar * tokenizer.config.steps_per_beat
    notes = bar_notes(ids, steps, tokenizer, L)
    bars, h = bar_hashes(notes, min_notes)
    # the latest earlier bar of equal content: its predecessor among bars sorted by (hash, bar)
    prev = np.full(len(bars), -1)
    order = np.argsort(h, kind="stable")
    same = (h[order][1:] == h[order][:-1]) & (h[order][1:] != 0)
    prev[order[1:][same]] = order[:-1][same]
    # the first note token of each bar (notes are in token order)
    first = notes["token"][np.searchsorted(notes["bar"], bars)]
    bar_distance = np.where(prev >= 0, first - first[np.maximum(prev, 0)], 0)
    # each token's bar and its distance (specials belong to no bar)
    special = tokenizer.kinds[ids] == SPECIAL
    slot = np.searchsorted(bars, steps // L)
    known = ~special & (slot < len(bars))
    known[known] = bars[slot[known]] == (steps // L)[known]
    d = np.zeros(n, np.int64)
    d[known] = bar_distance[slot[known]]
    pos = np.arange(n)
    segment_start = context * ((np.maximum(pos, 1) - 1) // context)
    groups = np.where(d == 0, NOVEL, np.where(pos - d >= segment_start, REPEAT_NEAR, REPEAT_FAR))
    groups[pos <= context] = FIRST_SEGMENT
    groups = groups.astype(np.int8)
    return (groups, d) if return_distance else groups


def group_counts(groups: ArrayLike) -> dict:
    """How many tokens of each group: ``{name: count}``."""
    c = np.bincount(np.asarray(groups, np.int64), minlength=len(GROUPS))
    return {name: int(c[k]) for k, name in enumerate(GROUPS)}
