"""Real MIDI files: the bundled Bach chorales and ../shared/corpus round-trip with note F1 = 1."""

import numpy as np
import pytest

from midigen import EncodingConfig, MidiError, Tokenizer, encode, read_midi
from midigen.check import check, check_file, find_midi_files
from midigen.encoding import encode_via_sparse


def test_shared_corpus_round_trips_exactly(shared_corpus):
    report = check([shared_corpus], progress=False)
    assert report["ok"] >= 20
    assert report["note_f1_min"] == 1.0
    failed = {f["path"].rsplit("/", 1)[-1]: f["error"] for f in report["failed"]}
    # the two known-bad files are reported with their reason, nothing else fails
    assert set(failed) <= {"empty.mid", "ValueError_Control168.mid"}
    if "empty.mid" in failed:
        assert "no notes" in failed["empty.mid"]


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog()], ids=["default", "blog"])
def test_shared_corpus_sparse_equals_direct(shared_corpus, config):
    tok = Tokenizer(config)
    for path in find_midi_files([shared_corpus]):
        try:
            score = read_midi(path)
            direct = encode(score, tok)
        except MidiError:
            continue
        dense = encode_via_sparse(score, tok)
        assert np.array_equal(direct.ids, dense.ids), path
        assert np.array_equal(direct.steps, dense.steps), path


def test_multitrack_keeps_instruments_drums_and_tempo(shared_corpus):
    path = shared_corpus / "multitrack" / "Funkytown.mid"
    if not path.exists():
        pytest.skip("Funkytown.mid absent")
    tok = Tokenizer()
    toks = encode(path, tok)
    words = set(tok.to_tokens(toks.ids))
    assert "drums" in words
    assert len([w for w in words if w.startswith("i")]) >= 4
    assert any(w.startswith("t") for w in words)
    assert check_file(path, tok).f1 == 1.0


def test_bach_chorales_round_trip(bach_files):
    report = check(bach_files[::10], progress=False)
    assert report["failed"] == []
    assert report["note_f1_min"] == 1.0
