"""Property tests: decode(encode(x)) is x quantised to the grid, for random scores.

Random scores have several instruments, drums, chords (and exact duplicates), zero-length and
over-long notes, tempo changes and silences. The expected result comes from `check`'s reference
quantisation (Python fractions), written independently of the encoder's integer numpy path.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midigen import EncodingConfig, PositionScore, Score, SparseScore, Tokenizer, decode, encode
from midigen.check import decoded_notes, note_f1, reference_notes
from midigen.encoding import encode_via_sparse
from midigen.encoding.index import encode_position, steps_of
from midigen.encoding.quantise import ticks_to_steps
from midigen.encoding.vocab import K_DUR, K_INSTR, K_NOTE, K_SEP, K_TEMPO

PROGRAMS = [0, 0, 24, 33, 73, 128]  # 128 = drums


@st.composite
def scores(draw, max_notes=40, max_ticks=6000):
    tpq = draw(st.sampled_from([96, 120, 384, 480, 1000]))
    n = draw(st.integers(1, max_notes))
    pitch = draw(st.lists(st.integers(0, 127), min_size=n, max_size=n))
    start = draw(st.lists(st.integers(0, max_ticks), min_size=n, max_size=n))
    length = draw(st.lists(st.integers(0, 4 * tpq * 5), min_size=n, max_size=n))
    inst = draw(st.lists(st.sampled_from(PROGRAMS), min_size=n, max_size=n))
    if draw(st.booleans()) and n > 1:  # an exact chord / duplicate
        pitch[1], start[1] = pitch[0], start[0]
    k = draw(st.integers(0, 4))
    tempos = [(0, draw(st.floats(20, 400)))] if draw(st.booleans()) else []
    tempos += [(draw(st.integers(0, max_ticks)), draw(st.floats(20, 400))) for _ in range(k)]
    tempos.sort(key=lambda t: t[0])
    inst = np.array(inst)
    return Score.from_notes(
        pitch, start, np.add(start, length), program=np.where(inst == 128, 0, inst), is_drum=inst == 128,
        ticks_per_quarter=tpq, tempos=tempos or np.zeros((0, 2)), velocity=80,
    )


configs = st.sampled_from(
    [
        EncodingConfig(),
        EncodingConfig.blog(),
        EncodingConfig(steps_per_beat=3, max_duration=6, max_silence=6),
        EncodingConfig(steps_per_beat=12, max_duration=24, max_silence=None),
        EncodingConfig(min_pitch=21, max_pitch=108, tempo=False),
    ]
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected_notes(score, cfg):
    """Reference notes with the config's lossy choices applied (range, drums in blog mode)."""
    keep = (score.pitch >= cfg.min_pitch) & (score.pitch <= cfg.max_pitch)
    if not cfg.instruments:
        keep &= ~score.is_drum
    return reference_notes(score.select(keep), cfg)


def has_long_silence(score, cfg):
    if cfg.max_silence is None:
        return False
    onsets = np.unique(ticks_to_steps(score.start, score.ticks_per_quarter, cfg.steps_per_beat))
    return bool(np.diff(np.concatenate([[0], onsets])).max(initial=0) > cfg.max_silence)


@SETTINGS
@given(scores(), configs)
def test_round_trip_equals_quantised_original(score, cfg):
    tok = Tokenizer(cfg)
    expected = expected_notes(score, cfg)
    if not expected:
        return
    back = decode(encode(score, tok).ids, tok, strict=True)
    got = decoded_notes(back, cfg)
    if has_long_silence(score, cfg):
        # silences are shortened: same notes in the same order, only shifted in time
        assert len(got) == len(expected)
        assert sorted((k[0], k[1], v) for k, v in got.items()) == sorted((k[0], k[1], v) for k, v in expected.items())
    else:
        assert got == expected
        assert note_f1(expected, got) == (1.0, 1.0, 1.0)


@SETTINGS
@given(scores(), configs)
def test_sparse_and_direct_paths_give_identical_tokens(score, cfg):
    tok = Tokenizer(cfg)
    if not expected_notes(score, cfg):
        return
    direct = encode(score, tok)
    dense = encode_via_sparse(score, tok)
    rows = encode_position(PositionScore.from_score(score, cfg), tok)
    assert np.array_equal(direct.ids, dense.ids)
    assert np.array_equal(direct.ids, rows.ids)
    assert np.array_equal(direct.steps, dense.steps)
    assert np.array_equal(direct.steps, rows.steps)
    assert direct.stats == dense.stats


@SETTINGS
@given(scores(), configs)
def test_tokens_follow_the_grammar_and_carry_time_steps(score, cfg):
    tok = Tokenizer(cfg)
    if not expected_notes(score, cfg):
        return
    toks = encode(score, tok)
    kind = tok.table.kind[toks.ids]
    steps = toks.steps.astype(np.int64)
    assert kind[0] == 1 and kind[-1] == 2  # <sos> ... <eos>
    assert np.all(np.diff(steps) >= 0)  # time never goes backwards
    durations = np.flatnonzero(kind == K_DUR)
    assert np.isin(kind[durations - 1], [K_NOTE, K_SEP]).all()  # a duration follows a note or <sep>
    # a note token's step is the sum of the gaps (<sep> dN) before it
    seps = np.flatnonzero(kind == K_SEP)
    gap_at = np.zeros(len(kind), np.int64)
    gap_at[seps + 1] = tok.table.value[toks.ids[seps + 1]]
    notes = kind == K_NOTE
    assert np.array_equal(steps[notes], np.cumsum(gap_at)[notes])
    assert steps[-1] == gap_at.sum()  # <eos> is the end of the piece
    assert np.array_equal(steps_of(toks.ids, tok), toks.steps)  # what prepare's cache relies on
    two = np.concatenate([toks.ids, toks.ids])  # pieces back to back restart at their <sos>
    assert np.array_equal(steps_of(two, tok, [0, len(toks)]), np.concatenate([toks.steps, toks.steps]))
    if not cfg.instruments:
        assert not (kind == K_INSTR).any()
    if not cfg.tempo:
        assert not (kind == K_TEMPO).any()
    assert toks.stats["encoded_notes"] == np.count_nonzero(kind == K_NOTE)


@SETTINGS
@given(scores(max_notes=20), configs)
def test_tempo_survives(score, cfg):
    if not cfg.tempo:
        return
    tok = Tokenizer(cfg)
    if not expected_notes(score, cfg):
        return
    back = decode(encode(score, tok).ids, tok)
    values = cfg.tempo_values()
    spb = cfg.steps_per_beat
    # At each decoded note, the tempo in force equals the original's at that note, to a bin.
    orig_steps = ticks_to_steps(score.tempo_ticks, score.ticks_per_quarter, spb)
    new_steps = back.tempo_ticks * spb // back.ticks_per_quarter
    if has_long_silence(score, cfg):
        return
    for s in np.unique(back.start * spb // back.ticks_per_quarter):
        i = np.searchsorted(orig_steps, s, side="right") - 1
        want = 120.0 if i < 0 else score.tempo_qpm[i]
        j = np.searchsorted(new_steps, s, side="right") - 1
        got = back.tempo_qpm[j]
        assert np.isclose(got, values[cfg.tempo_bin([want])[0]], rtol=1e-6)


@SETTINGS
@given(scores(max_notes=15))
def test_sparse_score_round_trip(score):
    cfg = EncodingConfig()
    sparse = SparseScore.from_score(score, cfg)
    again = SparseScore.from_position(sparse.to_position())
    n = min(sparse.n_steps, again.n_steps)
    assert np.array_equal(sparse.array[:, :n], again.array[:, :n])
    assert np.array_equal(sparse.instruments, again.instruments)
