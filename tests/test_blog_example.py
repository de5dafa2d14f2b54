"""The blog's own 3-pitch example, at every step of the encoding, both ways."""

import numpy as np
import pytest

from midigen import EncodingConfig, PositionScore, Score, SparseScore, Tokenizer, decode, encode
from midigen.encoding import encode_via_sparse

BLOG_TOKENS = "<sos> n1 d4 <sep> d1 n3 d2 <sep> d5 n2 d2 n3 d2 <sep> d2 <eos>"


@pytest.fixture
def blog_score():
    # 480 ticks per quarter, 4 steps per beat: one step is 120 ticks.
    # Step 0: pitch 1 for 4 steps; step 1: pitch 3 for 2; step 6: pitches 2 and 3 for 2.
    return Score.from_notes(pitch=[1, 3, 2, 3], start=[0, 120, 720, 720], end=[480, 360, 960, 960])


def test_sparse_score(blog_score):
    sparse = SparseScore.from_score(blog_score, EncodingConfig.blog())
    expected = np.array(
        [
            [4, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 2, 0],
            [0, 2, 0, 0, 0, 0, 2, 0],
        ]
    )
    assert sparse.array.shape == (1, 8, 128)
    assert np.array_equal(sparse.array[0, :, 1:4].T, expected)


def test_position_score(blog_score):
    pos = PositionScore.from_score(blog_score, EncodingConfig.blog())
    assert pos.blog_rows.tolist() == [[1, 4], [-1, 1], [3, 2], [-1, 5], [2, 2], [3, 2], [-1, 2]]


def test_index_score_exactly_the_blogs(blog_score):
    tok = Tokenizer(EncodingConfig.blog())
    toks = encode(blog_score, tok)
    assert " ".join(tok.to_tokens(toks.ids)) == BLOG_TOKENS
    assert np.array_equal(toks.ids, encode_via_sparse(blog_score, tok).ids)
    # every token carries its time step; <sep> dN belong to the step they leave
    assert toks.steps.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 6, 6, 6, 6, 6, 6, 8]


def test_blog_tokens_decode_back(blog_score):
    tok = Tokenizer(EncodingConfig.blog())
    back = decode(tok.to_ids(BLOG_TOKENS), tok, strict=True)
    got = sorted(zip(back.pitch.tolist(), (back.start // 120).tolist(), ((back.end - back.start) // 120).tolist()))
    assert got == [(1, 0, 4), (2, 6, 2), (3, 1, 2), (3, 6, 2)]
    # and through the sparse score
    pos = PositionScore.from_score(back, EncodingConfig.blog())
    assert np.array_equal(SparseScore.from_position(pos).array, SparseScore.from_score(blog_score, EncodingConfig.blog()).array)


def test_default_config_adds_tempo_instrument_part_and_velocity(blog_score):
    tok = Tokenizer(EncodingConfig(parts=False, velocity_bins=0))
    tokens = tok.to_tokens(encode(blog_score, tok).ids)
    assert tokens[:3] == ["<sos>", "t120", "i0"]
    assert " ".join(["<sos>"] + tokens[3:]) == BLOG_TOKENS
    tokens = Tokenizer().to_tokens(encode(blog_score, Tokenizer()).ids)  # the part declared, its velocity (90)
    assert tokens[:5] == ["<sos>", "t120", "i0", "p0", "v11"]
    assert " ".join(["<sos>"] + tokens[5:]) == BLOG_TOKENS
