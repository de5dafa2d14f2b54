"""The token grammar: which token may follow which. Defined once, here.

The strict decoder uses it to name the first bad token, the sampler to mask every token that
cannot come next (so each generated sequence decodes), and BPE to keep merges decodable.

A sequence is ``<sos>``, then time steps separated by gaps, then ``<eos>``::

    <sos> [tempo] ([instrument] note duration)* (<sep> duration [tempo] ([instrument] note duration)*)* <eos>

What may come next depends on the previous token's *context* (its kind, with durations split
into a note's duration and a gap's), plus two facts about the past: whether an instrument has
been named yet (with instrument tokens, a note needs one) and how long the sequence is (no
``<eos>`` before ``min_length``). ``<eos>`` closes a piece only after a gap, as the encoder
writes it (``... <sep> d{to the end} <eos>``).
"""

from __future__ import annotations

import numpy as np

from .vocab import K_DUR, K_EOS, K_INSTR, K_NOTE, K_PAD, K_SEP, K_SOS, K_TEMPO, Vocab

# Contexts: the kind of the last token, durations split by what they measure.
C_START, C_SOS, C_SEP, C_NOTE, C_NOTE_DUR, C_GAP_DUR, C_INSTR, C_TEMPO, C_END = range(9)
N_KINDS = 8

_ALLOWED = {  # context -> kinds that may follow (a note also needs an instrument, see below)
    C_START: {K_SOS},
    C_SOS: {K_TEMPO, K_INSTR, K_NOTE, K_SEP},
    C_TEMPO: {K_INSTR, K_NOTE, K_SEP},
    C_INSTR: {K_NOTE},
    C_NOTE: {K_DUR},
    C_NOTE_DUR: {K_INSTR, K_NOTE, K_SEP},
    C_SEP: {K_DUR},
    C_GAP_DUR: {K_TEMPO, K_INSTR, K_NOTE, K_SEP, K_EOS},
    C_END: {K_PAD},
}
ALLOWED_KINDS = np.zeros((9, N_KINDS), bool)
for _c, _ks in _ALLOWED.items():
    ALLOWED_KINDS[_c, list(_ks)] = True

# NEXT_CONTEXT[context, kind of the new token] -> context after it. Only a duration depends on
# the context: after <sep> it is a gap, otherwise a note's duration.
NEXT_CONTEXT = np.full((9, N_KINDS), C_END, np.int64)
for _k, _c in {K_SOS: C_SOS, K_SEP: C_SEP, K_NOTE: C_NOTE, K_INSTR: C_INSTR, K_TEMPO: C_TEMPO}.items():
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
    """Allowed-next-token masks for one vocabulary, for whole batches at once."""

    def __init__(self, vocab: Vocab, min_length: int = 0):
        self.vocab = vocab
        self.min_length = min_length
        self.needs_instrument = vocab.config.instruments
        # (context, token id) -> allowed, before the instrument and length conditions
        self.table = ALLOWED_KINDS[:, vocab.kind]
        self.is_note = vocab.kind == K_NOTE
        self.is_eos = vocab.kind == K_EOS

    def allowed(self, ctx, has_instrument, length) -> np.ndarray:
        """Boolean (batch, vocab) mask of the tokens that may come next.

        ``ctx``: context of each row's last token; ``has_instrument``: whether an instrument was
        named in the row; ``length``: the row's current length in tokens.
        """
        ctx = np.atleast_1d(ctx)
        mask = self.table[ctx].copy()
        if self.needs_instrument:
            mask[~np.atleast_1d(has_instrument)] &= ~self.is_note
        short = np.atleast_1d(length) < self.min_length
        mask[short] &= ~self.is_eos
        return mask

    def violations(self, ids) -> np.ndarray:
        """Positions of tokens that the grammar does not allow where they stand."""
        ids = np.asarray(ids, np.int64)
        kinds = self.vocab.kind[ids]
        ctx = np.concatenate([[C_START], contexts(kinds)[:-1]])
        has_instr = np.concatenate([[False], np.cumsum(kinds == K_INSTR)[:-1] > 0])
        ok = self.table[ctx, ids]
        if self.needs_instrument:
            ok &= ~((kinds == K_NOTE) & ~has_instr)
        ok &= ~((kinds == K_EOS) & (np.arange(len(ids)) < self.min_length))
        return np.flatnonzero(~ok)

    def step(self, ctx, token_ids):
        """Advance contexts by one token per row (for samplers): returns the new contexts."""
        return NEXT_CONTEXT[np.asarray(ctx), self.vocab.kind[np.asarray(token_ids)]]

    def explain(self, ids, i: int) -> str:
        """Why token ``i`` of ``ids`` breaks the grammar, in words."""
        kinds = self.vocab.kind[np.asarray(ids, np.int64)]
        k = int(kinds[i])
        prev = C_START if i == 0 else int(contexts(kinds[:i])[-1])
        if prev == C_START:
            return "a sequence must start with <sos>"
        if prev == C_NOTE:
            return "a note must be followed by a duration"
        if prev == C_SEP:
            return "<sep> must be followed by a duration (the gap)"
        if prev == C_INSTR:
            return "an instrument token must be followed by a note"
        return {
            K_DUR: "a duration must follow a note or <sep>",
            K_NOTE: "the first note needs an instrument token before it",
            K_TEMPO: "a tempo token must open a time step (after <sos> or a gap)",
            K_SOS: "<sos> may only start the sequence",
            K_PAD: "<pad> inside a sequence",
            K_EOS: "<eos> must follow a gap (<sep> dN)" if i >= self.min_length else "<eos> before the minimum length",
            K_INSTR: "an instrument token must open a note",
        }.get(k, "token not allowed here")


def token_tables(codec) -> dict:
    """Grammar tables per token of a `Vocab` or a `BPE` tokenizer, for samplers.

    ``allowed`` (contexts, V), ``next_ctx`` (contexts, V), ``advance`` (contexts, V): time steps the
    token's gaps move on; ``needs_instrument``, ``gives_instrument``, ``has_eos``, ``has_note``,
    ``has_duration`` (V). For a base vocabulary every token is one base token; for BPE each merged
    token is walked through the base grammar (`BPE.grammar_tables`).
    """
    if hasattr(codec, "grammar_tables"):
        ok, nxt, adv, needs, gives, eos = codec.grammar_tables()
        kinds = [codec.base.kind[p] for p in codec.pieces]
        has_note = np.array([(k == K_NOTE).any() for k in kinds])
        has_dur = np.array([(k == K_DUR).any() for k in kinds])
        instruments = codec.base.config.instruments
    else:
        kind = codec.kind
        ok = ALLOWED_KINDS[:, kind]
        nxt = NEXT_CONTEXT[:, kind]
        adv = np.where(nxt == C_GAP_DUR, codec.value[None, :], 0)
        needs, gives, eos = kind == K_NOTE, kind == K_INSTR, kind == K_EOS
        has_note, has_dur = kind == K_NOTE, kind == K_DUR
        instruments = codec.config.instruments
    if not instruments:
        needs = np.zeros_like(needs)
    return {"allowed": ok, "next_ctx": nxt, "advance": adv, "needs_instrument": needs, "gives_instrument": gives,
            "has_eos": eos, "has_note": has_note, "has_duration": has_dur}
