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


def test_check_reports_what_the_round_trip_changes_on_funkytown(shared_corpus):
    path = shared_corpus / "multitrack" / "Funkytown.mid"
    if not path.exists():
        pytest.skip("Funkytown.mid absent")
    score = read_midi(path)
    assert score.tempo_qpm.tolist() == [125.0] and score.ticks_per_quarter == 192
    assert not check_file(path, Tokenizer()).changes["dynamics_flattened"]  # 16 velocity bins: kept
    c = check_file(path, Tokenizer(EncodingConfig(velocity_bins=0))).changes
    # 125 qpm lies between the bins 120 * 2**(k/12): the nearest is 127.14 qpm (+1.7%)
    assert c["tempo_error_qpm"] == pytest.approx(2.136, abs=0.01)
    assert c["tempo_error_pct"] == pytest.approx(1.708, abs=0.01)
    assert (c["velocity_min"], c["velocity_max"]) == (41, 121) and c["dynamics_flattened"]
    assert c["ticks_per_quarter"] == [192, 480]
    flat = Tokenizer(EncodingConfig(velocity_bins=0))
    back = flat.decode(flat.encode(score).ids)
    assert set(back.velocity.tolist()) == {90}  # what "flattened" means
    # with tempo tokens off, every piece decodes at 120 qpm: the report says so
    assert check_file(path, Tokenizer(EncodingConfig(tempo=False))).changes["tempo_error_pct"] == pytest.approx(4.0)


def test_check_report_on_bach_chorales(bach_files):
    report = check(bach_files[:40], progress=False)
    assert report["dynamics_flattened"] == 0  # the chorales have one velocity throughout
    assert 0 < report["tempo_error_pct_max"] <= 100 * (2 ** (1 / 24) - 1) + 1e-3  # within half a bin
    first = report["results"][0]["changes"]
    assert first["ticks_per_quarter"] == [10080, 480] and first["velocity_min"] == first["velocity_max"] == 90
    assert report["time_signatures_lost"] > 0  # some chorales are in 3/4
    assert any(r["changes"]["time_signatures_lost"] for r in report["results"])
