"""Step 3 of the blog's encoding: the *index score*, flat token ids.

Each position-score row becomes tokens: a note ``n{pitch} d{duration}`` (preceded by an
instrument token ``i{program}``/``drums`` whenever the instrument differs from the previous
note's; with ``parts``, by a part token ``p{k}`` whenever the part changes, the part's first one
declared by its instrument token: ``i0 p1``; with ``velocity_bins``, by a velocity token ``v{bin}``
whenever the note's bin differs from the previous note's of its part or instrument), a gap
``<sep> d{gap}``, a tempo change ``t{qpm}``; the whole piece sits between
``<sos>`` and ``<eos>``. With the blog's config, its example becomes exactly

    <sos> n1 d4 <sep> d1 n3 d2 <sep> d5 n2 d2 n3 d2 <sep> d2 <eos>

Every token also gets its time step (a parallel array): the step of its note or tempo change,
and for ``<sep> dN`` the step that the gap leaves, so all tokens of one time step ("action") share
one value. ``<sos>`` is step 0 and ``<eos>`` the end of the piece.

Both directions are vectorised over whole arrays: offsets by cumsum, token kinds by lookup.
The functions here take a `Tokenizer` and write or read *base* ids (its ``table``); merging them
is `Tokenizer.apply_bpe`'s job, and `decode_position` expands merged ids first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DecodeError
from .openers import decode_openers, opener_marks, write_openers
from .position import GAP, TEMPO, PositionScore, SortedNotes, _split_gap, layout
from .vocab import K_DUR, K_EOS, K_NOTE, K_PAD, K_SEP, K_SOS, K_TEMPO

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..midi import Score
    from .tokenizer import Tokenizer


@dataclass
class Tokens:
    """An encoded piece: token ``ids``, the time ``steps`` of each token, and encoding ``stats``.

    ``tokenizer``: the `Tokenizer` that gives the ids their meaning, where known (set by
    `Tokenizer.encode` and `midigen.generate.generate`), so ``play(tokens)`` or
    ``tokens.to_score()`` can decode them without being told.
    """

    ids: np.ndarray
    steps: np.ndarray
    stats: dict = field(default_factory=dict)
    tokenizer: Tokenizer | None = field(default=None, repr=False, compare=False)
    part_names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """With parts: the source's part names (tokens carry none), which `to_score` gives the parts."""

    def to_score(self, tokenizer: Tokenizer | None = None) -> Score:
        """Decode to a `midigen.Score` with ``tokenizer``, else the one that made these tokens."""
        tok = tokenizer or self.tokenizer
        if tok is None:
            raise TypeError("these Tokens carry no tokenizer: pass tokenizer= (the Tokenizer that made them, "
                            "e.g. the one load_model returned)")
        return tok.decode(self.ids, part_names=self.part_names)

    def __len__(self) -> int:
        return len(self.ids)


def encode_position(pos: PositionScore, tokenizer: Tokenizer) -> Tokens:
    """A position score to base ids (the teaching path; `encode_notes` is the production one)."""
    vocab = tokenizer.table
    cfg = vocab.config
    if pos.config != cfg:
        raise ValueError(f"position score was made with another config: {pos.config.diff(cfg)}")
    P, V, Ins, S = pos.pitch, pos.value, pos.instrument, pos.step
    note = np.flatnonzero(P >= 0)
    other = np.flatnonzero(P < 0)
    # tokens per row: tempo 1, gap 2 (<sep> d), note 2 (n d) + its openers (instrument, part, velocity)
    counts = np.where(P == TEMPO, 1, 2)
    ni = Ins[note]
    nv = None if pos.velocity is None else pos.velocity[note]
    marks = opener_marks(cfg, ni, nv)
    counts[note] += marks.count()
    offs = np.cumsum(counts)
    n = int(offs[-1]) + 2 if len(offs) else 2
    offs += 1 - counts
    ids = np.empty(n, np.int64)
    ids[0], ids[-1] = vocab.sos_id, vocab.eos_id

    # gap and tempo rows: first token is <sep> or t{qpm}, a gap's second token its length
    o = offs[other]
    Po, Vo = P[other], V[other]
    is_gap = Po == GAP
    ids[o] = np.where(is_gap, vocab.sep_id, vocab.tempo_offset + Vo)
    ids[o[is_gap] + 1] = vocab.dur_offset - 1 + Vo[is_gap]
    # note rows: [instrument] [part] [velocity] n d
    o = write_openers(ids, offs[note], ni, nv, marks, vocab, pos.part_programs)
    ids[o] = vocab.note_offset - cfg.min_pitch + P[note]
    ids[o + 1] = vocab.dur_offset - 1 + V[note]

    steps = np.empty(n, np.int64)
    steps[0], steps[-1] = 0, pos.length
    steps[1:-1] = np.repeat(S, counts)
    return Tokens(ids.astype(tokenizer.dtype), steps.astype(np.int32), dict(pos.stats), part_names=pos.part_names)


def encode_notes(notes: SortedNotes, tokenizer: Tokenizer) -> Tokens:
    """The production path: sorted, de-duplicated notes straight to base ids, no rows in between.

    Gives exactly ``encode_position(layout(notes))`` (the tests hold it to that); it exists
    because it runs once per file of a corpus and does half the numpy calls. Tempo changes after
    step 0 are rare and take the row path.
    """
    vocab = tokenizer.table
    cfg = vocab.config
    onset, inst, pitch, dur = notes.onset, notes.instrument, notes.pitch, notes.duration
    tempo_step, tempo_bin, length, stats = notes.tempo_step, notes.tempo_bin, notes.length, notes.stats
    n = len(onset)
    if n == 0 or len(tempo_step) > 1 or (len(tempo_step) == 1 and tempo_step[0] != 0):
        return encode_position(layout(notes), tokenizer)
    maxd = cfg.max_duration
    last = np.empty(n, bool)  # note is the last of its time step
    np.not_equal(onset[1:], onset[:-1], out=last[:-1])
    last[-1] = True
    steps = onset[last]
    gaps = np.empty(len(steps), np.int64)  # gap after each step, to the next one or the end
    np.subtract(steps[1:], steps[:-1], out=gaps[:-1])
    end = max(int(length), int(steps[-1]))
    gaps[-1] = end - steps[-1]
    lead = int(onset[0])
    n_tempo = len(tempo_step)

    counts = np.full(n, 2, np.int64)
    marks = opener_marks(cfg, inst, notes.velocity)
    counts += marks.count()
    simple = int(gaps.max()) <= maxd
    gap_rows = np.ones(len(steps), np.int64) if simple else -(-gaps // maxd)
    counts[last] += 2 * gap_rows
    lead_rows = -(-lead // maxd)
    head = 1 + n_tempo + 2 * lead_rows  # <sos>, the step-0 tempo, then any leading silence
    offs = np.cumsum(counts)
    total = int(offs[-1]) + head + 1
    offs += head - counts

    ids = np.empty(total, np.int64)
    tsteps = np.empty(total, np.int64)
    ids[0], ids[-1] = vocab.sos_id, vocab.eos_id
    tsteps[0], tsteps[-1] = 0, end
    tsteps[1:head] = 0
    if n_tempo:
        ids[1] = vocab.tempo_offset + tempo_bin[0]
    if lead_rows:
        ids[1 + n_tempo : head : 2] = vocab.sep_id
        ids[2 + n_tempo : head : 2] = vocab.dur_offset - 1 + _split_gap([lead], [lead_rows], maxd)
    o = write_openers(ids, offs, inst, notes.velocity, marks, vocab, notes.part_programs)
    ids[o] = vocab.note_offset - cfg.min_pitch + pitch
    ids[o + 1] = vocab.dur_offset - 1 + dur
    g = o[last] + 2  # first <sep> after each step's last note
    if simple:
        ids[g] = vocab.sep_id
        ids[g + 1] = vocab.dur_offset - 1 + gaps
    else:
        rg = np.repeat(g, gap_rows) + 2 * (
            np.arange(int(gap_rows.sum())) - np.repeat(np.cumsum(gap_rows) - gap_rows, gap_rows)
        )
        ids[rg] = vocab.sep_id
        ids[rg + 1] = vocab.dur_offset - 1 + _split_gap(gaps, gap_rows, maxd)
    tsteps[head:-1] = np.repeat(onset, counts)
    return Tokens(ids.astype(tokenizer.dtype), tsteps.astype(np.int32), stats, part_names=notes.part_names)


def steps_of(ids: ArrayLike, tokenizer: Tokenizer, starts: ArrayLike | None = None) -> np.ndarray:
    """The time step of every token (`Tokens.steps`), recomputed from base ids alone.

    Time moves only after a gap (``<sep> dN``: the next token is N steps later), so a token's step
    is the sum of the gaps before it; a gap's own tokens keep the step it leaves, also when a long
    silence takes several ``<sep> dN`` in a row. ``ids`` may hold several pieces back to back;
    ``starts`` (their start offsets, ``starts[0] == 0``) restarts the count at each one.

    Vectorised, and lean because `midigen prepare` runs it over every token of a corpus (its
    cache keeps ids only): each run of gaps adds its total at the token after the run, each piece
    start takes back the previous piece's total, and one int32 cumsum does the rest.
    """
    vocab = tokenizer.table
    ids = np.asarray(ids)
    n = len(ids)
    dur = np.flatnonzero(ids[:-1] == vocab.sep_id) + 1  # (no table lookup over all tokens: the
    dur = dur[vocab.kind[ids[dur]] == K_DUR]  # slowest step) the duration token of each gap
    amount = vocab.value[ids[dur]]
    inc = np.zeros(n + 1, np.int32)
    if len(dur):
        new_run = np.empty(len(dur), bool)
        new_run[0] = True
        np.not_equal(np.diff(dur), 2, out=new_run[1:])  # gaps 2 tokens apart belong to one run
        first = np.flatnonzero(new_run)
        last = np.append(first[1:], len(dur)) - 1
        total = np.add.reduceat(amount, first)
        inc[dur[last] + 1] = total  # (the token after a run: the next note, or <eos>)
    if starts is not None and len(starts) > 1:
        starts = np.asarray(starts, np.int64)
        if starts[0] != 0:
            raise ValueError("starts must begin with 0 (the first piece starts the array)")
        # each piece's total, taken back at the next piece's start
        run_at = dur[last] + 1 if len(dur) else np.zeros(0, np.int64)
        piece = np.searchsorted(starts, run_at, side="right") - 1
        per_piece = np.bincount(piece, weights=total if len(dur) else None, minlength=len(starts))
        inc[starts[1:]] -= per_piece[:-1].astype(np.int32)
    return np.cumsum(inc[:n], dtype=np.int32)


def decode_position(ids: ArrayLike, tokenizer: Tokenizer, strict: bool = False,
                    part_names: tuple[str, ...] = ()) -> PositionScore:
    """Token ids (base or merged) back to a position score.

    Reading stops at the first ``<eos>``. With ``strict=True`` any break of the grammar raises
    `DecodeError` naming the position and tokens; otherwise malformed pieces are skipped (a note
    without a duration, a stray duration, ...) and counted in ``stats["skipped_tokens"]``.
    """
    ids = np.asarray(ids, np.int64).ravel()
    if len(ids) and (ids.min() < 0 or ids.max() >= len(tokenizer)):
        bad = int(ids[(ids < 0) | (ids >= len(tokenizer))][0])
        raise DecodeError(f"token id {bad} is outside the vocabulary (size {len(tokenizer)})")
    if strict:
        eos = np.flatnonzero(tokenizer.grammar.has_eos[ids])
        _check_grammar(ids[: eos[0] + 1] if len(eos) else ids, tokenizer)
    vocab = tokenizer.table
    ids = tokenizer.to_base(ids)
    kind = vocab.kind[ids]
    eos = np.flatnonzero(kind == K_EOS)
    if len(eos):
        ids, kind = ids[: eos[0]], kind[: eos[0]]
    value = vocab.value[ids]
    nxt = np.append(kind[1:], -1)

    is_note = (kind == K_NOTE) & (nxt == K_DUR)
    is_gap = (kind == K_SEP) & (nxt == K_DUR)
    is_tempo = kind == K_TEMPO
    used = is_note | is_gap | is_tempo
    used[1:] |= is_note[:-1] | is_gap[:-1]  # their durations
    used |= kind == K_SOS
    op = decode_openers(kind, value, nxt, vocab.config)
    used |= op.used
    last_instr = op.last_opener  # instrument (part) of each note: the last instrument (part) token before it
    default_inst = 0
    rows = np.flatnonzero(is_note | is_gap | is_tempo)
    r_kind = kind[rows]
    r_note = r_kind == K_NOTE
    r_gap = r_kind == K_SEP
    r_next_val = value[np.minimum(rows + 1, len(ids) - 1)] if len(ids) else value[:0]
    pitch = np.where(r_note, value[rows], np.where(r_gap, GAP, TEMPO)).astype(np.int16)
    val = np.where(r_note | r_gap, r_next_val, value[rows])
    li = last_instr[rows]
    inst = np.where(r_note, np.where(li >= 0, value[np.maximum(li, 0)], default_inst), -1).astype(np.int16)
    if not vocab.config.instruments:
        inst = np.where(r_note, 0, -1).astype(np.int16)
    gaps = np.where(r_gap, val, 0)
    step = np.cumsum(gaps) - gaps  # gaps strictly before each row
    note_end = (step + val)[r_note]
    length = int(max(gaps.sum(), note_end.max(initial=0)))
    stats = {"skipped_tokens": int(len(ids) - np.count_nonzero(used | (kind == K_PAD)))}
    vel = op.row_velocity(rows, r_note, inst) if vocab.config.velocity_bins else None
    return PositionScore(pitch, val.astype(np.int64), inst, step.astype(np.int64), length, vocab.config, stats,
                         vel, op.part_programs, tuple(part_names))


def _check_grammar(ids: ArrayLike, tokenizer: Tokenizer) -> None:
    if len(ids) == 0:
        raise DecodeError("empty token sequence (expected <sos> ...)")
    grammar = tokenizer.grammar
    bad = grammar.violations(ids)
    if len(bad):
        i = int(bad[0])
        ctx = " ".join(tokenizer.to_tokens(ids[max(0, i - 3) : i + 4]))
        raise DecodeError(f"token {i} ({tokenizer.tokens[ids[i]]!r}): {grammar.explain(ids, i)}; around: {ctx}")
