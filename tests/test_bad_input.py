"""Bad input: every kind gives a MidiError naming the file and the problem, fast; nothing crashes."""

import numpy as np
import pytest

import smf
from midigen import EncodingConfig, MidiError, Score, Tokenizer, decode, encode, read_midi
from midigen.check import check

GOOD = smf.simple_file()

BAD = {
    "empty": (b"", "empty"),
    "text": (b"this is not a MIDI file at all", "not a MIDI file"),
    "random": (bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)), "not a MIDI file"),
    "header-cut": (GOOD[:9], "truncated header"),
    "header-only": (smf.header(1), "no track chunk"),
    "track-cut-early": (GOOD[:20], "corrupt or truncated"),
    "track-cut-middle": (GOOD[: len(GOOD) // 2], "corrupt or truncated"),
    "track-cut-end": (GOOD[:-1], "corrupt or truncated"),
    "no-notes": (smf.smf([smf.track(smf.tempo(120))]), "no notes"),
    "division-0": (smf.smf([smf.track(smf.note())], division=0), "ticks per quarter note is 0"),
    "smpte": (smf.smf([smf.track(smf.note())], division=0xE728), "SMPTE"),
    "zero-tracks": (smf.header(0) + smf.track(smf.note()), "0 tracks"),
    # ten maximal delta times in a row run past the 32-bit tick range
    "overflow": (smf.smf([smf.track(sum((smf.note(delta=0x0FFFFFFF) for _ in range(10)), []))]), "overflow"),
    "bad-status": (smf.smf([smf.track([(0, b"\x90\x3c\x50"), (10, b"\xf4\x01")])]), "corrupt"),
    "rmid": (b"RIFF\x00\x00\x00\x00RMIDdata", "RMID"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_raises_midi_error_naming_file(tmp_path, name):
    data, reason = BAD[name]
    p = tmp_path / f"{name}.mid"
    p.write_bytes(data)
    with pytest.raises(MidiError) as info:
        encode(read_midi(p), Tokenizer())
    assert str(p) in str(info.value)
    assert reason.lower() in info.value.reason.lower()
    assert info.value.path == str(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MidiError, match="no such file"):
        read_midi(tmp_path / "nope.mid")
    with pytest.raises(MidiError, match="directory"):
        read_midi(tmp_path)


def test_midi_error_survives_pickling_between_processes():
    import pickle

    err = pickle.loads(pickle.dumps(MidiError("a.mid", "broken")))
    assert err.path == "a.mid" and err.reason == "broken" and str(err) == "a.mid: broken"


def test_huge_gap_is_shortened_not_flooding_the_corpus(tmp_path):
    # Two notes ~270 million ticks apart: without a silence policy, millions of <sep> tokens.
    data = smf.smf([smf.track(smf.note(60) + smf.note(62, delta=0x0FFFFFFF))])
    toks = encode(Score.from_bytes(data), Tokenizer())
    assert len(toks) < 40
    assert toks.stats["shortened_silences"] == 1
    back = decode(toks.ids, Tokenizer())
    assert back.pitch.tolist() == [60, 62]
    gap_steps = (back.start[1] - back.start[0]) * 4 // back.ticks_per_quarter
    assert gap_steps == EncodingConfig().max_silence


def test_thousands_of_tracks_are_read():
    data = smf.smf([smf.track(smf.note(40 + i % 40, delta=i % 7)) for i in range(10_000)])
    s = Score.from_bytes(data)
    assert s.n_notes == 10_000
    toks = encode(s, Tokenizer(EncodingConfig(parts=False)))
    # pitch i % 40 and onset i % 7 ticks (all on step 0): 40 distinct cells, the rest merge
    assert toks.stats["encoded_notes"] == 40
    with_parts = encode(s, Tokenizer())  # at most max_parts (32) parts: further tracks join one of them
    assert 40 < with_parts.stats["encoded_notes"] <= 32 * 40 and with_parts.to_score().n_parts <= 32
    assert toks.stats["merged_duplicates"] == 10_000 - 40


def test_wrong_track_count_in_header_is_tolerated():
    s = Score.from_bytes(smf.smf([smf.track(smf.note())], ntracks=5))
    assert s.n_notes == 1


def test_out_of_range_notes_are_dropped_and_counted():
    s = Score.from_notes(pitch=[10, 60, 64, 120], start=[0, 0, 480, 480], end=[480] * 2 + [960] * 2)
    cfg = EncodingConfig(min_pitch=21, max_pitch=108)
    tok = Tokenizer(cfg)
    toks = encode(s, tok)
    assert toks.stats["dropped_pitch_range"] == 2
    assert toks.stats["encoded_notes"] == 2
    assert sorted(decode(toks.ids, tok).pitch.tolist()) == [60, 64]
    only_out = Score.from_notes(pitch=[10, 120], start=[0, 0], end=[480, 480])
    with pytest.raises(MidiError, match="no encodable notes.*2 outside the pitch range"):
        encode(only_out, tok)


def test_drums_only_in_blog_scheme():
    s = Score.from_notes(pitch=[36, 38], start=[0, 480], end=[240, 720], is_drum=True)
    with pytest.raises(MidiError, match="2 drum notes"):
        encode(s, Tokenizer(EncodingConfig.blog()))
    assert encode(s, Tokenizer()).stats["encoded_notes"] == 2


def test_check_reports_failures_among_good_files(tmp_path):
    (tmp_path / "good.mid").write_bytes(GOOD)
    for name in ("empty", "track-cut-middle", "no-notes", "text"):
        (tmp_path / f"{name}.mid").write_bytes(BAD[name][0])
    report = check([tmp_path], progress=False)
    assert report["files"] == 5 and report["ok"] == 1
    assert report["note_f1_min"] == 1.0
    failed = {f["path"].rsplit("/", 1)[-1]: f["error"] for f in report["failed"]}
    assert set(failed) == {"empty.mid", "track-cut-middle.mid", "no-notes.mid", "text.mid"}
    assert "empty" in failed["empty.mid"] and "no notes" in failed["no-notes.mid"]


def test_decode_strict_names_the_problem():
    from midigen import DecodeError

    v = Tokenizer(EncodingConfig.blog())
    for tokens, msg in [
        ("<sos> n1 <sep> d1 <eos>", "note must be followed by a duration"),
        ("<sos> n1 d4 <sep> n2 d2 <eos>", "<sep> must be followed by a duration"),
        ("<sos> d3 n1 d4 <eos>", "duration must follow a note or <sep>"),
        ("n1 d4 <eos>", "must start with <sos>"),
    ]:
        with pytest.raises(DecodeError, match=msg):
            decode(v.to_ids(tokens), v, strict=True)
    # lenient decoding keeps what it can
    back = decode(v.to_ids("<sos> n1 <sep> d1 n3 d2 d7 <eos>"), v)
    assert back.pitch.tolist() == [3]
    with pytest.raises(DecodeError, match="outside the vocabulary"):
        decode([1, 5000, 2], v)


def test_decoding_merges_repeated_notes_as_the_encoder_does():
    v = Tokenizer(EncodingConfig.blog())
    back = decode(v.to_ids("<sos> n60 d2 n60 d4 n60 d1 n64 d2 <sep> d4 <eos>"), v, strict=True)
    assert sorted(zip(back.pitch.tolist(), ((back.end - back.start) * 4 // back.ticks_per_quarter).tolist())) == [(60, 4), (64, 2)]
