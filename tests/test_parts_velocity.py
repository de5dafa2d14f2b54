"""Parts and dynamics (`EncodingConfig.parts`, `velocity_bins`): off by default, exact when on.

Property tests in the style of test_encoding_properties.py (random scores whose parts share
programs and whose notes have random velocities), then real files: the chorales keep their four
named voices, a shared-corpus file with dynamics keeps every note's velocity bin, and the
default config's tokens and tokenizer (the bundled model's) are what they were.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midigen import EncodingConfig, PositionScore, Score, Tokenizer, decode, encode, read_midi
from midigen.check import _velocity_bins_kept, check, decoded_notes, reference_notes
from midigen.encoding import encode_via_sparse
from midigen.encoding.index import encode_position
from midigen.encoding.vocab import K_INSTR, K_NOTE, K_PART, K_VEL

PROGRAMS = [0, 0, 0, 24, 33, 128]  # shared programs on purpose; 128 = drums


@st.composite
def part_scores(draw, max_notes=40, max_ticks=4000):
    tpq = draw(st.sampled_from([96, 120, 480]))
    n_parts = draw(st.integers(1, 5))
    programs = np.array(draw(st.lists(st.sampled_from(PROGRAMS), min_size=n_parts, max_size=n_parts)))
    n = draw(st.integers(1, max_notes))
    pitch = draw(st.lists(st.integers(0, 127), min_size=n, max_size=n))
    start = draw(st.lists(st.integers(0, max_ticks), min_size=n, max_size=n))
    length = draw(st.lists(st.integers(0, 4 * tpq * 3), min_size=n, max_size=n))
    part = np.array(draw(st.lists(st.integers(0, n_parts - 1), min_size=n, max_size=n)))
    velocity = draw(st.lists(st.integers(1, 127), min_size=n, max_size=n))
    if draw(st.booleans()) and n > 1:  # two parts of one program play the same note
        pitch[1], start[1] = pitch[0], start[0]
    inst = programs[part]
    names = [f"voice {k}" for k in range(n_parts)]
    return Score.from_notes(
        pitch, start, np.add(start, length), program=np.where(inst == 128, 0, inst), is_drum=inst == 128,
        velocity=velocity, ticks_per_quarter=tpq, part=part, part_names=names,
    )


configs = st.sampled_from([
    EncodingConfig(parts=True, max_silence=None),
    EncodingConfig(parts=True, velocity_bins=8, max_silence=None),
    EncodingConfig(velocity_bins=16, max_silence=None),
    EncodingConfig(parts=True, velocity_bins=4, tempo=False, steps_per_beat=3, max_duration=6, max_silence=None),
    EncodingConfig.blog(velocity_bins=8, max_silence=None),
])

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _kept(score, cfg):
    keep = (score.pitch >= cfg.min_pitch) & (score.pitch <= cfg.max_pitch)
    if not cfg.instruments:
        keep &= ~score.is_drum
    return score.select(keep)


@SETTINGS
@given(part_scores(), configs)
def test_parts_and_velocity_bins_survive_encode_decode(score, cfg):
    tok = Tokenizer(cfg)
    sub = _kept(score, cfg)
    if not len(sub):
        return
    toks = encode(score, tok)
    assert not len(tok.grammar.violations(toks.ids))
    back = decode(toks.ids, tok, strict=True)
    assert decoded_notes(back, cfg) == reference_notes(sub, cfg)  # (part, pitch, onset) -> duration
    if cfg.parts:  # every part comes back, with its instrument (shared programs stay apart)
        pairs = np.unique(sub.part.astype(np.int64) * 129 + sub.instrument)
        assert back.n_parts == len(pairs)
        assert [int(back.instrument[back.part == k][0]) for k in range(back.n_parts)] == (pairs % 129).tolist()
        assert toks.to_score().part_names == tuple(f"voice {k}" for k in pairs // 129)
    if cfg.velocity_bins:
        assert _velocity_bins_kept(sub, back, cfg) == 1.0
        assert set(back.velocity.tolist()) <= set(cfg.velocity_values().tolist())


@SETTINGS
@given(part_scores(), configs)
def test_paths_agree_and_openers_are_compact(score, cfg):
    tok = Tokenizer(cfg)
    if not len(_kept(score, cfg)):
        return
    direct = encode(score, tok)
    assert np.array_equal(direct.ids, encode_via_sparse(score, tok).ids)
    assert np.array_equal(direct.ids, encode_position(PositionScore.from_score(score, cfg), tok).ids)
    kind = tok.table.kind[direct.ids]
    value = tok.table.value[direct.ids]
    assert np.isin(kind[np.flatnonzero(kind == K_VEL) + 1], [K_NOTE]).all()  # v{bin} right before its note
    if cfg.parts:
        decl = np.flatnonzero(kind == K_INSTR)
        assert (kind[decl + 1] == K_PART).all()  # i{program} only declares a part ...
        assert len(np.unique(value[decl + 1])) == len(decl)  # ... once
    if cfg.velocity_bins:  # a velocity token only where a part's (instrument's) bin changes
        opener = np.isin(kind, [K_PART] if cfg.parts else [K_INSTR])
        last_opener = np.maximum.accumulate(np.where(opener, np.arange(len(kind)), 0))
        key = value[last_opener] if cfg.instruments else np.zeros(len(kind), np.int64)
        v = np.flatnonzero(kind == K_VEL)
        last: dict = {}
        for i in v:
            assert last.get(key[i]) != value[i]
            last[key[i]] = value[i]


def test_defaults_are_on_and_files_made_before_them_read_as_off(bach_files):
    cfg = EncodingConfig()
    assert cfg.parts and cfg.velocity_bins == 16
    toks = Tokenizer().encode(bach_files[0])
    assert np.isin(Tokenizer().table.kind[toks.ids], [K_PART, K_VEL]).any()
    # a tokenizer.json written before parts and dynamics (the first bundled model's) has neither key
    old = Tokenizer.load(Path(__file__).parent / "data" / "tokenizer_before_parts.json")
    assert not old.config.parts and old.config.velocity_bins == 0
    off = EncodingConfig(parts=False, velocity_bins=0)
    assert old == Tokenizer(off) and old.hash == Tokenizer(off).hash  # hashes and caches of old files hold
    assert not {"parts", "max_parts", "velocity_bins"} & set(off.to_dict())
    assert not np.isin(old.table.kind[old.encode(bach_files[0]).ids], [K_PART, K_VEL]).any()
    on = EncodingConfig(parts=True, velocity_bins=8)
    assert EncodingConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert EncodingConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert Tokenizer(on).hash != Tokenizer(off).hash
    assert EncodingConfig.blog() == EncodingConfig(instruments=False, tempo=False, velocity_bins=0)
    assert not EncodingConfig.blog().parts and not EncodingConfig(instruments=False).parts  # parts need instruments


def test_chorales_keep_four_named_voices_and_grow_little_with_velocity(bach_files):
    tok = Tokenizer(EncodingConfig(parts=True, velocity_bins=8))
    plain = Tokenizer(EncodingConfig(parts=False, velocity_bins=0))
    vel_only = Tokenizer(EncodingConfig(parts=False, velocity_bins=8))
    four = 0
    for path in bach_files[:30]:
        score = read_midi(path)
        back = tok.encode(score).to_score()
        assert back.n_parts == score.n_parts and back.part_names == score.part_names
        four += back.part_names[-4:] == ("Soprano", "Alto", "Tenor", "Bass")
        assert len(vel_only.encode(score)) <= 1.05 * len(plain.encode(score))
    assert four >= 25


def test_check_with_parts_and_velocity(bach_files, shared_corpus):
    cfg = EncodingConfig(parts=True, velocity_bins=8)
    report = check(bach_files[:20], cfg, progress=False)
    assert report["note_f1_min"] == 1.0
    report = check([shared_corpus], cfg, progress=False)
    assert report["ok"] >= 20 and report["note_f1_min"] == 1.0
    assert report["velocity_bins_kept_min"] == 1.0


def test_funkytown_keeps_every_velocity_bin(shared_corpus):
    path = shared_corpus / "multitrack" / "Funkytown.mid"
    if not path.exists():
        pytest.skip("Funkytown.mid absent")
    score = read_midi(path)
    for bins in (8, 16):
        cfg = EncodingConfig(parts=True, velocity_bins=bins)
        tok = Tokenizer(cfg)
        back = tok.decode(tok.encode(score).ids, strict=True)
        assert _velocity_bins_kept(score, back, cfg) == 1.0
        assert len(set(cfg.velocity_bin(back.velocity).tolist())) > 1  # dynamics, not one velocity
        assert back.n_parts == score.n_parts
