"""The token grammar: which token may follow which. Defined once, here.

The strict decoder uses it to name the first bad token, the sampler to mask every token that
cannot come next (so each generated sequence decodes), and BPE to keep merges decodable. A
tokenizer reaches it as ``tokenizer.grammar``: one `Grammar` of per-token tables, for base and
merged tokens alike (a merged token is walked through the base grammar from every context).

A sequence is ``<sos>``, then time steps separated by gaps, then ``<eos>``::

    <sos> [tempo] (open note duration)* (<sep> duration [tempo] (open note duration)*)* <eos>
    open = [instrument] [velocity]                  (without parts)
    open = [[instrument] part] [velocity]           (with parts)

With parts, a part's first token is declared by the instrument token before it (``i0 p1``);
velocity tokens exist with velocity bins.

What may come next depends on the previous token's *context* (its kind, with durations split
into a note's duration and a gap's), plus two facts about the past: whether an instrument has
been named yet (with instrument tokens, a note needs one) and how long the sequence is (no
``<eos>`` before ``min_length``). ``<eos>`` closes a piece only after a gap, as the encoder
writes it (``... <sep> d{to the end} <eos>``).

With parts, one more fact: which parts have been declared. A part token right after an
instrument token declares its part, which must be new; any other part token must name a part
declared before it (the encoder declares each part once, before its first note). Without this
rule a sampler could open a fifth voice in a four-part chorale that no instrument ever named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .vocab import K_DUR, K_EOS, K_INSTR, K_NOTE, K_PAD, K_PART, K_SEP, K_SOS, K_TEMPO, K_VEL, Vocab

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

# Contexts: the kind of the last token, durations split by what they measure.
C_START, C_SOS, C_SEP, C_NOTE, C_NOTE_DUR, C_GAP_DUR, C_INSTR, C_TEMPO, C_END, C_PART, C_VEL = range(11)
N_KINDS = 10
N_CONTEXTS = 11

_OPEN = {K_INSTR, K_PART, K_VEL, K_NOTE}  # what may open a note (kinds a config lacks never occur)
_ALLOWED = {  # context -> kinds that may follow (a note also needs an instrument, see below)
    C_START: {K_SOS},
    C_SOS: {K_TEMPO, K_SEP} | _OPEN,
    C_TEMPO: {K_SEP} | _OPEN,
    C_INSTR: {K_NOTE, K_VEL},  # with parts: {K_PART} (`allowed_kinds`)
    C_PART: {K_NOTE, K_VEL},
    C_VEL: {K_NOTE},
    C_NOTE: {K_DUR},
    C_NOTE_DUR: {K_SEP} | _OPEN,
    C_SEP: {K_DUR},
    C_GAP_DUR: {K_TEMPO, K_SEP, K_EOS} | _OPEN,
    C_END: {K_PAD},
}
ALLOWED_KINDS = np.zeros((N_CONTEXTS, N_KINDS), bool)
for _c, _ks in _ALLOWED.items():
    ALLOWED_KINDS[_c, list(_ks)] = True
_ALLOWED_PARTS = ALLOWED_KINDS.copy()  # with parts an instrument token declares the part after it
_ALLOWED_PARTS[C_INSTR] = False
_ALLOWED_PARTS[C_INSTR, K_PART] = True


def allowed_kinds(parts: bool) -> np.ndarray:
    """(contexts, kinds): which kind may follow which context, with or without parts."""
    return _ALLOWED_PARTS if parts else ALLOWED_KINDS


def opener_kind(parts: bool) -> int:
    """The kind that names a note's part (with parts) or instrument: what a first note needs."""
    return K_PART if parts else K_INSTR


# NEXT_CONTEXT[context, kind of the new token] -> context after it. Only a duration depends on
# the context: after <sep> it is a gap, otherwise a note's duration.
NEXT_CONTEXT = np.full((N_CONTEXTS, N_KINDS), C_END, np.int64)
for _k, _c in {K_SOS: C_SOS, K_SEP: C_SEP, K_NOTE: C_NOTE, K_INSTR: C_INSTR, K_TEMPO: C_TEMPO, K_PART: C_PART,
               K_VEL: C_VEL}.items():
    NEXT_CONTEXT[:, _k] = _c
NEXT_CONTEXT[:, K_DUR] = C_NOTE_DUR
NEXT_CONTEXT[C_SEP, K_DUR] = C_GAP_DUR


def contexts(kinds: np.ndarray) -> np.ndarray:
    """The context after each token of a sequence of token kinds (vectorised)."""
    kinds = np.asarray(kinds, np.int64)
    # Every context depends only on the token's kind, except a duration's: use the previous
    # token's (kind-only) context, which is C_SEP exactly when the previous token is <sep>.
    prev = np.concatenate([[C_START], NEXT_CONTEXT[C_START, kinds[:-1]]])
    return NEXT_CONTEXT[prev, kinds]


class Grammar:
    """The grammar's tables for every id of a tokenizer (base and merged tokens alike).

    Built by `Tokenizer.grammar` from the base table and each id's base tokens (``pieces``, a
    (V, longest) matrix padded with -1). Per id and context before it:

    ``allowed`` (contexts, V): the token may stand there; ``next_ctx`` (contexts, V): the context
    after it; ``advance`` (contexts, V): time steps its gaps move on. Per id (V,):
    ``needs_instrument`` (it holds a note or velocity before any instrument (part) token of its own, and the
    encoding has instruments), ``gives_instrument``, ``has_eos``, ``has_note``, ``has_duration``.
    """

    def __init__(self, table: Vocab, pieces: np.ndarray):
        V, maxlen = pieces.shape
        kinds, values = table.kind, table.value
        allowed_k = allowed_kinds(table.config.parts)
        opener = opener_kind(table.config.parts)
        self.table = table
        self.lengths = lengths = (pieces >= 0).sum(1)
        ctx = np.repeat(np.arange(N_CONTEXTS)[:, None], V, 1)  # (contexts, V)
        ok = np.ones((N_CONTEXTS, V), bool)
        advance = np.zeros((N_CONTEXTS, V), np.int64)
        for j in range(maxlen):  # walk position by position, all tokens and contexts at once
            present = pieces[:, j] >= 0
            k = np.where(present, kinds[np.maximum(pieces[:, j], 0)], 0)
            ok &= np.where(present[None, :], allowed_k[ctx, k[None, :]], True)
            new = NEXT_CONTEXT[ctx, k[None, :]]
            gap = (new == C_GAP_DUR) & present[None, :]
            # time may only move on at the very end of a merged token (an action ends with its
            # gap): a token like "d4+n67" right after a bare <sep> would read d4 as a gap and
            # put n67 a step later than the token's own step
            ok &= ~(gap & (j < lengths - 1)[None, :])
            advance += np.where(gap, values[np.maximum(pieces[:, j], 0)][None, :], 0)
            ctx = np.where(present[None, :], new, ctx)
        k_all = np.where(pieces >= 0, kinds[np.maximum(pieces, 0)], -1)
        first_instr = np.where((k_all == opener).any(1), (k_all == opener).argmax(1), maxlen)
        opens = (k_all == K_NOTE) | (k_all == K_VEL)  # a velocity token opens a note too: it needs its part
        first_note = np.where(opens.any(1), opens.argmax(1), maxlen)
        self.allowed, self.next_ctx, self.advance = ok, ctx, advance
        self.needs_instrument = (first_note < first_instr) & table.config.instruments
        self.gives_instrument = (k_all == opener).any(1)
        self.has_eos = (k_all == K_EOS).any(1)
        self.has_note = (k_all == K_NOTE).any(1)
        self.has_duration = (k_all == K_DUR).any(1)
        self._pieces = pieces
        # parts: what each id declares and uses, by whether the context before it is an instrument
        # token (then the id's leading part token, if any, is a declaration); index 1: after one
        self.n_parts = P = table.config.max_parts if table.config.parts else 0
        self.part_decl = np.zeros((2, V, P), bool)
        self.part_use = np.zeros((2, V, P), bool)
        self.ends_with_instrument = k_all[np.arange(V), lengths - 1] == K_INSTR
        if P:
            vals = np.where(pieces >= 0, values[np.maximum(pieces, 0)], 0)
            for after_instr in (0, 1):
                decl, use = _part_roles(k_all, vals, bool(after_instr))
                for table_, roles in ((self.part_decl, decl), (self.part_use, use)):
                    v, j = np.nonzero(roles)
                    table_[after_instr, v, vals[v, j]] = True

    def _base(self, ids: ArrayLike):
        """Base ids of ``ids`` and the base position where each token ends."""
        ids = np.asarray(ids, np.int64)
        if self._pieces.shape[1] == 1:
            return ids, np.arange(len(ids))
        p = self._pieces[ids]
        return p[p >= 0], np.cumsum(self.lengths[ids]) - 1

    def violations(self, ids: ArrayLike, min_length: int = 0) -> np.ndarray:
        """Positions of the tokens that the grammar does not allow where they stand (vectorised).

        ``min_length``: no ``<eos>`` before this many tokens (as the sampler's ``min_length``).
        """
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros(0, np.int64)
        base, ends = self._base(ids)
        kinds = self.table.kind[base]
        after = contexts(kinds)[ends]  # the context after each token
        before = np.concatenate([[C_START], after[:-1]])
        ok = self.allowed[before, ids]
        has_instr = np.concatenate([[False], np.cumsum(self.gives_instrument[ids])[:-1] > 0])
        ok &= ~(self.needs_instrument[ids] & ~has_instr)
        ok &= ~(self.has_eos[ids] & (np.arange(len(ids)) < min_length))
        if self.n_parts:
            ok[np.searchsorted(ends, _undeclared_parts(kinds, self.table.value[base]))] = False
        return np.flatnonzero(~ok)

    def explain(self, ids: ArrayLike, i: int, min_length: int = 0) -> str:
        """Why token ``i`` of ``ids`` breaks the grammar, in words."""
        ids = np.asarray(ids, np.int64)
        base, ends = self._base(ids[: i + 1])
        kinds = self.table.kind[base]
        start = int(ends[i - 1]) + 1 if i else 0
        bad = [j for j in range(start, len(base)) if len(_base_violations(kinds[: j + 1], self.table, j))]
        values = self.table.value[base]
        wrong = _undeclared_parts(kinds, values) if self.n_parts else np.zeros(0, np.int64)
        wrong = wrong[wrong >= start]
        if len(wrong) and (not bad or wrong[0] < bad[0]):
            j = int(wrong[0])
            if j and kinds[j - 1] == K_INSTR:
                return f"part p{values[j]} is declared twice (an instrument token before a part token declares it)"
            return f"part p{values[j]} is used before it is declared (i{{program}} p{values[j]} declares it)"
        if not bad:
            if self.has_eos[ids[i]] and i < min_length:
                return "<eos> before the minimum length"
            return "a merged token may move time on only at its end (after its gap)"
        j = bad[0]
        k = int(kinds[j])
        prev = C_START if j == 0 else int(contexts(kinds[:j])[-1])
        if prev == C_START:
            return "a sequence must start with <sos>"
        if prev == C_NOTE:
            return "a note must be followed by a duration"
        if prev == C_SEP:
            return "<sep> must be followed by a duration (the gap)"
        if prev == C_INSTR:
            return ("an instrument token must be followed by the part it declares" if self.table.config.parts
                    else "an instrument token must be followed by a note (or its velocity)")
        if prev == C_PART:
            return "a part token must be followed by a note (or its velocity)"
        if prev == C_VEL:
            return "a velocity token must be followed by a note"
        return {
            K_DUR: "a duration must follow a note or <sep>",
            K_NOTE: "the first note needs an instrument (with parts: a part) token before it",
            K_TEMPO: "a tempo token must open a time step (after <sos> or a gap)",
            K_SOS: "<sos> may only start the sequence",
            K_PAD: "<pad> inside a sequence",
            K_EOS: "<eos> must follow a gap (<sep> dN)",
            K_INSTR: "an instrument token must open a note",
            K_PART: "a part token must open a note",
            K_VEL: "a velocity token must open a note, after its instrument (part) token",
        }.get(k, "token not allowed here")


def _part_roles(kinds: np.ndarray, values: np.ndarray, after_instrument: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Which part tokens of base sequences (rows of ``kinds``/``values``, (V, L); padding kinds -1)
    declare a part (right after an instrument token; ``after_instrument``: the token before each
    row is one) and which use a part declared earlier (a part the same row declared before it
    does not count): two (V, L) masks, vectorised over every row."""
    before = np.full((len(kinds), 1), K_INSTR if after_instrument else -1)
    prev = np.concatenate([before, kinds[:, :-1]], axis=1)
    is_part = kinds == K_PART
    decl = is_part & (prev == K_INSTR)
    L = kinds.shape[1]
    earlier = np.tri(L, k=-1, dtype=bool)  # earlier[j, i]: position i comes before j
    declared_here = (decl[:, None, :] & (values[:, None, :] == values[:, :, None]) & earlier).any(2)
    use = is_part & (prev != K_INSTR) & ~declared_here
    return decl, use


def _undeclared_parts(kinds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Base positions of part tokens that use an undeclared part or declare a declared one (vectorised)."""
    n = len(kinds)
    prev = np.concatenate([[-1], kinds[:-1]])
    is_part = kinds == K_PART
    decl = is_part & (prev == K_INSTR)
    pos = np.arange(n)
    v = np.where(is_part, values, 0)
    first = np.full(int(v.max(initial=0)) + 1, n)
    parts, idx = np.unique(v[decl], return_index=True)
    first[parts] = pos[decl][idx]
    bad = (is_part & ~decl & (pos < first[v])) | (decl & (pos != first[v]))
    return np.flatnonzero(bad)


def _base_violations(kinds: np.ndarray, table: Vocab, j: int) -> np.ndarray:
    """Whether base token ``j`` (the last of ``kinds``) breaks the base grammar: [j] or []."""
    prev = C_START if j == 0 else int(contexts(kinds[:j])[-1])
    k = int(kinds[j])
    ok = allowed_kinds(table.config.parts)[prev, k]
    if k in (K_NOTE, K_VEL) and table.config.instruments and not (kinds[:j] == opener_kind(table.config.parts)).any():
        ok = False
    return np.zeros(0 if ok else 1)
