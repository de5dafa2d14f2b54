"""Score in and out: files, bytes, pretty_midi and music21."""

import numpy as np
import pretty_midi
import pytest

from midigen import Score, read_midi, write_midi
from midigen.midi import DRUMS


def band_score():
    return Score.from_notes(
        pitch=[36, 60, 64, 67, 40, 42],
        start=[0, 0, 0, 0, 480, 480],
        end=[240, 960, 960, 960, 720, 600],
        program=[0, 0, 0, 0, 33, 0],
        is_drum=[True, False, False, False, False, True],
        velocity=[100, 80, 80, 80, 90, 70],
        tempos=[(0, 96.0), (960, 140.0)],
        time_signatures=[(0, 3, 4)],
    )


def assert_same_notes(a: Score, b: Score):
    a, b = a.sorted(), b.sorted()
    scale = b.ticks_per_quarter / a.ticks_per_quarter
    assert np.array_equal(a.instrument, b.instrument)
    assert np.array_equal(a.pitch, b.pitch)
    assert np.allclose(a.start * scale, b.start)
    assert np.allclose(a.end * scale, b.end)
    assert np.array_equal(a.velocity, b.velocity)


def test_file_round_trip(tmp_path):
    s = band_score()
    p = write_midi(s, tmp_path / "band.mid")
    back = read_midi(p)
    assert_same_notes(s, back)
    assert back.path == str(p)
    assert np.allclose(back.tempo_qpm, [96.0, 140.0], rtol=1e-4)
    assert back.tempo_ticks.tolist() == [0, 960]
    assert (back.ts_numerator.tolist(), back.ts_denominator.tolist()) == ([3], [4])
    assert back.instrument.tolist().count(DRUMS) == 2
    assert not (tmp_path / "band.mid.tmp").exists()


def test_beats():
    s = band_score()
    assert s.start_beats.tolist() == (s.start / 480).tolist()
    assert s.end_beats.max() == 2.0


def test_pretty_midi_round_trip():
    s = band_score()
    pm = s.to_pretty_midi()
    assert isinstance(pm, pretty_midi.PrettyMIDI)
    assert sum(len(i.notes) for i in pm.instruments) == 6
    assert any(i.is_drum for i in pm.instruments)
    assert {i.program for i in pm.instruments if not i.is_drum} == {0, 33}
    assert np.isclose(pm.get_tempo_changes()[1][0], 96.0, rtol=1e-4)
    assert_same_notes(s, Score.from_pretty_midi(pm))


def test_music21_round_trip():
    music21 = pytest.importorskip("music21")
    s = Score.from_notes(pitch=[60, 64, 67, 72], start=[0, 480, 960, 1440], end=[480, 960, 1440, 2400])
    stream = s.to_music21()
    assert isinstance(stream, music21.stream.Score)
    pitches = [n.pitch.midi for n in stream.stripTies().flatten().notes]  # bar lines split notes into ties
    assert pitches == [60, 64, 67, 72]
    back = Score.from_music21(stream)
    assert back.pitch.tolist() == [60, 64, 67, 72]
    assert np.allclose(back.start_beats, [0, 1, 2, 3])
    assert np.allclose(back.end_beats - back.start_beats, [1, 1, 1, 2])


def test_bach_file_reads(bach_files):
    s = read_midi(bach_files[0])
    assert s.n_notes > 50
    assert set(np.unique(s.instrument)) <= set(range(129))
    assert "notes=" in repr(s)
