"""The token grammar: the encoder's output obeys it, and any walk it allows decodes."""

import numpy as np
import pytest

from midigen import DecodeError, EncodingConfig, Tokenizer, decode, encode
from midigen.encoding.grammar import C_INSTR, C_START


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog()], ids=["default", "blog"])
def test_encoded_chorales_obey_the_grammar(bach_files, config):
    tok = Tokenizer(config)
    grammar = tok.grammar
    for f in bach_files[::20]:
        assert len(grammar.violations(encode(f, tok).ids)) == 0, f


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog()], ids=["default", "blog"])
def test_random_walks_through_the_grammar_always_decode(config):
    """Sample uniformly among allowed tokens (what a constrained sampler does), 100 seeds."""
    tok = Tokenizer(config)
    g = tok.grammar
    B, T = 100, 300
    rng = np.random.default_rng(0)
    ids = np.zeros((B, T), np.int64)
    ctx = np.full(B, C_START)
    has_instr = np.zeros(B, bool)
    declared = np.zeros((B, g.n_parts), bool)
    done = np.zeros(B, bool)
    for t in range(T):
        # the sampler's mask, from the grammar's per-token tables
        mask = g.allowed[ctx] & ~(g.needs_instrument[None, :] & ~has_instr[:, None])
        after = (ctx == C_INSTR).astype(int)
        if g.n_parts:  # only declared parts are used, only new ones declared, while one is left
            mask &= ~(g.part_use[after] & ~declared[:, None, :]).any(-1)
            mask &= ~(g.part_decl[after] & declared[:, None, :]).any(-1)
            mask &= ~(g.ends_with_instrument[None, :] & declared.all(1, keepdims=True))
        if t < 20:  # no <eos> before the minimum length
            mask &= ~g.has_eos
        mask[done] = False
        mask[done, tok.pad_id] = True
        assert mask.any(axis=1).all()
        # uniform among allowed tokens: random scores, -inf where masked
        scores = np.where(mask, rng.random(mask.shape), -1.0)
        nxt = scores.argmax(axis=1)
        ids[:, t] = nxt
        declared |= g.part_decl[after, nxt]
        ctx = g.next_ctx[ctx, nxt]
        has_instr |= g.gives_instrument[nxt]
        done |= g.has_eos[nxt]
    for row in ids:
        eos = np.flatnonzero(g.has_eos[row])
        seq = row[: eos[0] + 1] if len(eos) else row
        assert len(g.violations(seq, min_length=20)) == 0
        score = decode(seq, tok, strict=True)
        if len(eos):
            assert eos[0] >= 20  # no end before the minimum length
        assert score.n_notes >= 0


def test_violations_are_explained():
    tok = Tokenizer(EncodingConfig(parts=False, velocity_bins=0))
    grammar = tok.grammar
    ids = tok.to_ids("<sos> t120 n60 d4 <sep> d4 <eos>")
    bad = grammar.violations(ids)
    assert bad.tolist() == [2]
    assert "instrument" in grammar.explain(ids, 2)
    ids = tok.to_ids("<sos> i0 n60 d4 t120 <sep> d4 <eos>")
    assert grammar.violations(ids).tolist() == [4]
    assert "tempo" in grammar.explain(ids, 4)
    tok = Tokenizer()  # with parts: a part token opens a note; its program is declared first
    ids = tok.to_ids("<sos> t120 i0 p0 v11 n60 d4 <sep> d4 <eos>")
    assert tok.grammar.violations(ids).tolist() == []
    ids = tok.to_ids("<sos> t120 i0 n60 d4 <sep> d4 <eos>")
    assert tok.grammar.violations(ids).tolist() == [3]


def test_eos_before_the_minimum_length_is_a_violation():
    tok = Tokenizer(EncodingConfig(parts=False, velocity_bins=0))
    ids = tok.to_ids("<sos> t120 i0 n60 d4 <sep> d4 <eos>")
    assert tok.grammar.violations(ids).tolist() == []
    assert tok.grammar.violations(ids, min_length=10).tolist() == [7]
    assert "minimum length" in tok.grammar.explain(ids, 7, min_length=10)


def test_a_part_is_declared_once_before_it_is_used():
    """The encoder declares each part once (``i{program} p{k}``) before its first note: a part token
    naming an undeclared part, or declaring a declared one, breaks the grammar and is explained."""
    tok = Tokenizer()
    g = tok.grammar
    ok = tok.to_ids("<sos> i0 p0 v5 n60 d4 i40 p1 v5 n67 d4 <sep> d4 p0 n62 d4 p1 n69 d4 <sep> d4 <eos>")
    assert g.violations(ok).tolist() == []
    undeclared = tok.to_ids("<sos> i0 p0 v5 n60 d4 <sep> d4 p3 v5 n62 d4 <sep> d4 <eos>")
    assert g.violations(undeclared).tolist() == [8]
    assert "p3 is used before it is declared" in g.explain(undeclared, 8)
    twice = tok.to_ids("<sos> i0 p0 v5 n60 d4 <sep> d4 i0 p0 n62 d4 <sep> d4 <eos>")
    assert g.violations(twice).tolist() == [9]
    assert "declared twice" in g.explain(twice, 9)
    with pytest.raises(DecodeError, match="p3 is used before it is declared"):
        decode(undeclared, tok, strict=True)
