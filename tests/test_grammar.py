"""The token grammar: the encoder's output obeys it, and any walk it allows decodes."""

import numpy as np
import pytest

from midigen import EncodingConfig, Vocab, decode, encode
from midigen.encoding.grammar import C_START, Grammar
from midigen.encoding.vocab import K_EOS, K_INSTR


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog()], ids=["default", "blog"])
def test_encoded_chorales_obey_the_grammar(bach_files, config):
    vocab = Vocab(config)
    grammar = Grammar(vocab)
    for f in bach_files[::20]:
        assert len(grammar.violations(encode(f, vocab).ids)) == 0, f


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog()], ids=["default", "blog"])
def test_random_walks_through_the_grammar_always_decode(config):
    """Sample uniformly among allowed tokens (what a constrained sampler does), 100 seeds."""
    vocab = Vocab(config)
    grammar = Grammar(vocab, min_length=20)
    B, T = 100, 300
    rng = np.random.default_rng(0)
    ids = np.zeros((B, T), np.int64)
    ctx = np.full(B, C_START)
    has_instr = np.zeros(B, bool)
    done = np.zeros(B, bool)
    for t in range(T):
        mask = grammar.allowed(ctx, has_instr, np.full(B, t))
        mask[done] = False
        mask[done, vocab.pad_id] = True
        assert mask.any(axis=1).all()
        # uniform among allowed tokens: random scores, -inf where masked
        scores = np.where(mask, rng.random(mask.shape), -1.0)
        tok = scores.argmax(axis=1)
        ids[:, t] = tok
        ctx = grammar.step(ctx, tok)
        has_instr |= vocab.kind[tok] == K_INSTR
        done |= vocab.kind[tok] == K_EOS
    for row in ids:
        eos = np.flatnonzero(vocab.kind[row] == K_EOS)
        seq = row[: eos[0] + 1] if len(eos) else row
        assert len(grammar.violations(seq)) == 0
        score = decode(seq, vocab, strict=True)
        if len(eos):
            assert eos[0] >= 20  # no end before the minimum length
        assert score.n_notes >= 0


def test_violations_are_explained():
    vocab = Vocab()
    grammar = Grammar(vocab)
    ids = vocab.to_ids("<sos> t120 n60 d4 <sep> d4 <eos>")
    bad = grammar.violations(ids)
    assert bad.tolist() == [2]
    assert "instrument" in grammar.explain(ids, 2)
    ids = vocab.to_ids("<sos> i0 n60 d4 t120 <sep> d4 <eos>")
    assert grammar.violations(ids).tolist() == [4]
    assert "tempo" in grammar.explain(ids, 4)
