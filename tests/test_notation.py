"""Sheet music with music21 + verovio (no MuseScore): one labelled staff per part, grand
staves, drums left out with a note; SVG counted staff by staff."""

import re

import numpy as np
import pytest

import midigen
import midigen.notation as nt
from conftest import BACH
from midigen import Score
from midigen.errors import PlaybackError
from midigen.notation import show_score, staves_per_system, to_svg, write_score

SATB = BACH / "bwv10.7.mid"  # four tracks: Soprano, Alto, Tenor, Bass (all program 0)


def measures_in(svg):
    return len(re.findall(r'class="measure"', svg))


def piano_piece():
    # two hands of one piano: a C major scale over a bass line two octaves lower
    right = list(range(72, 84))
    left = [36, 43, 40, 43] * 3
    t = np.arange(12) * 480
    return Score.from_notes(pitch=right + left, start=np.r_[t, t], end=np.r_[t, t] + 480)


def test_chorale_from_its_file_has_a_staff_per_voice_named_from_the_tracks():
    notation = show_score(SATB, measures=4)
    assert notation.parts == ["Soprano", "Alto", "Tenor", "Bass"]
    assert staves_per_system(notation.svg) == 4
    labels = " ".join(re.findall(r">([^<>]+)</tspan>", notation.svg))
    for voice in ("Soprano", "Alto", "Tenor", "Bass"):
        assert voice in labels
    assert measures_in(notation.svg) == 4
    assert "<svg" in notation._repr_html_()
    # a Score read from the file still holds exactly its notes: the same four staves
    assert show_score(midigen.read_midi(SATB), measures=2).n_staves == 4


def test_a_changed_score_is_not_drawn_from_its_file():
    s = midigen.read_midi(SATB)
    s.pitch = s.pitch + 2  # transposed: no longer the file's notes, so parts are instruments
    notation = show_score(s, measures=2)
    assert notation.parts == ["Acoustic Grand Piano"]  # SATB merged into one program-0 part...
    assert notation.n_staves == 2  # ...drawn on a grand staff


def test_piano_gets_a_grand_staff_and_a_narrow_part_one_staff():
    notation = show_score(piano_piece(), measures=None)
    assert notation.n_staves == 2 and notation.parts == ["Acoustic Grand Piano"]
    assert 'class="grpSym"' in notation.svg  # the brace
    assert notation.musicxml.count("<part id=") == 1 and "<staves>2</staves>" in notation.musicxml
    violin = Score.from_notes(pitch=[67, 69, 71, 72], start=[0, 480, 960, 1440], end=[480, 960, 1440, 1920],
                              program=40)
    assert show_score(violin).n_staves == 1 and "Violin" in to_svg(violin)


def test_drums_are_left_out_with_a_note():
    t = np.arange(8) * 240
    s = Score.from_notes(pitch=[36] * 8 + [40] * 8, start=np.r_[t, t], end=np.r_[t, t] + 200,
                         is_drum=[True] * 8 + [False] * 8, program=[0] * 8 + [33] * 8)
    notation = show_score(s)
    assert notation.n_staves == 1 and notation.parts == ["Electric Bass (finger)"]
    assert any("8 drum notes not shown" in n for n in notation.notes)
    assert "drum notes not shown" in notation._repr_html_()
    with pytest.raises(PlaybackError, match="nothing to engrave.*drum"):
        show_score(Score.from_notes(pitch=[36], start=[0], end=[240], is_drum=True))


def test_measures_follow_time_signatures():
    s = Score.from_notes(pitch=[60], start=[0], end=[240], time_signatures=((0, 3, 4), (480 * 6, 2, 4)))
    assert nt._measure_end_tick(s, 2) == 480 * 6
    assert nt._measure_end_tick(s, 3) == 480 * 8
    assert nt._measure_end_tick(Score.from_notes([60], [0], [1], time_signatures=()), 1) == 480 * 4


def test_files_and_a_missing_musescore(tmp_path, monkeypatch):
    svg = write_score(SATB, tmp_path / "chorale.svg", measures=2)
    assert svg.read_text().startswith("<svg") or "<svg" in svg.read_text()[:500]
    xml = write_score(SATB, tmp_path / "chorale.musicxml", measures=2)
    assert "<score-partwise" in xml.read_text()
    monkeypatch.setattr(nt, "find_musescore", lambda: None)
    with pytest.raises(PlaybackError, match="PDF export needs MuseScore.*apt-get install musescore3"):
        write_score(SATB, tmp_path / "chorale.pdf")
    assert not (tmp_path / "chorale.pdf").exists()
    # the old entry point still works, without MuseScore
    assert midigen.playback.show_score(SATB, measures=1).n_staves == 4
