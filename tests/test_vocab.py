"""Vocab: layout, JSON persistence, and clear errors for a vocabulary made differently."""

import json

import pytest

from midigen import EncodingConfig, Vocab, VocabError


def test_layout_and_specials():
    v = Vocab(EncodingConfig.blog())
    assert v.tokens[:4] == ["<pad>", "<sos>", "<eos>", "<sep>"]
    assert v.pad_id == 0
    assert v.tokens[v.note_offset] == "n0" and v.tokens[v.dur_offset] == "d1"
    assert len(v) == 4 + 128 + 64
    full = Vocab()
    assert "drums" in full.index and "i127" in full.index and "t120" in full.index
    assert full.dtype.__name__ == "uint16"


def test_json_round_trip(tmp_path):
    v = Vocab(EncodingConfig(steps_per_beat=6, max_duration=48))
    p = v.save(tmp_path / "vocab.json")
    d = json.loads(p.read_text())
    assert d["format"] == "midigen.vocab" and d["version"] == 1
    assert d["encoding"]["steps_per_beat"] == 6
    assert Vocab.load(p) == v
    assert Vocab.load(p, expected=EncodingConfig(steps_per_beat=6, max_duration=48)) == v


def test_mismatching_config_fails_clearly(tmp_path):
    p = Vocab(EncodingConfig(steps_per_beat=6)).save(tmp_path / "vocab.json")
    with pytest.raises(VocabError, match=r"different encoding configuration.*steps_per_beat: file has 6, expected 4"):
        Vocab.load(p, expected=EncodingConfig())


def test_edited_or_foreign_files_fail_clearly(tmp_path):
    p = Vocab().save(tmp_path / "vocab.json")
    d = json.loads(p.read_text())
    d["tokens"][10] = "n999"
    p.write_text(json.dumps(d))
    with pytest.raises(VocabError, match="token list does not match"):
        Vocab.load(p)
    d["version"] = 99
    p.write_text(json.dumps(d))
    with pytest.raises(VocabError, match="version 99"):
        Vocab.load(p)
    p.write_text("{not json")
    with pytest.raises(VocabError, match="not valid JSON"):
        Vocab.load(p)
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(VocabError, match="not a midigen vocabulary"):
        Vocab.load(p)
    with pytest.raises(VocabError, match="no such vocabulary"):
        Vocab.load(tmp_path / "missing.json")


def test_token_strings():
    v = Vocab(EncodingConfig.blog())
    ids = v.to_ids("<sos><n1><d4>".replace("<n1>", " n1 ").replace("<d4>", " d4"))
    assert v.to_tokens(ids) == ["<sos>", "n1", "d4"]
    with pytest.raises(VocabError, match="unknown token 'x9'"):
        v.to_ids(["x9"])


def test_bad_configs_rejected():
    with pytest.raises(ValueError):
        EncodingConfig(steps_per_beat=0)
    with pytest.raises(ValueError):
        EncodingConfig(min_pitch=50, max_pitch=40)
    with pytest.raises(ValueError, match="max_silence"):
        EncodingConfig(max_duration=64, max_silence=10)
