"""Rendering with the real FluidSynth and pretty_midi's SoundFont; the piano roll."""

import numpy as np
import pytest

from midigen import Score
from midigen.playback import PlaybackError, fluidsynth_available, piano_roll, play, render, write_wav


def two_seconds():
    # four quarter notes at 120 qpm = 2 s
    return Score.from_notes(pitch=[60, 62, 64, 65], start=[0, 480, 960, 1440], end=[480, 960, 1440, 1920])


@pytest.mark.skipif(not fluidsynth_available(), reason="libfluidsynth is not installed")
def test_render_is_audible_and_right_length():
    audio = render(two_seconds(), sample_rate=16000)
    assert audio.dtype == np.float32
    seconds = len(audio) / 16000
    assert 2.0 <= seconds <= 4.5  # the notes plus the SoundFont's release tail
    assert np.sqrt(np.mean(audio[: 16000 * 2] ** 2)) > 0.01  # not silent
    assert np.abs(audio).max() <= 1.0


def test_bad_soundfont_is_named(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(PlaybackError, match="bad.sf2: not a SoundFont"):
        render(two_seconds(), soundfont=bad)
    with pytest.raises(PlaybackError, match="SoundFont not found"):
        render(two_seconds(), soundfont=tmp_path / "missing.sf2")


def test_play_returns_audio_and_wav_written(tmp_path):
    from IPython.display import Audio

    player = play(two_seconds(), sample_rate=8000, seconds=1)
    assert isinstance(player, Audio)
    p = write_wav(render(two_seconds(), 8000, fallback=True), tmp_path / "x.wav", 8000)
    import wave

    with wave.open(str(p)) as w:
        assert w.getframerate() == 8000 and w.getnframes() > 8000


def test_piano_roll_draws_each_instrument():
    import matplotlib

    matplotlib.use("Agg")
    s = Score.from_notes(pitch=[36, 60, 64], start=[0, 0, 480], end=[240, 960, 960], is_drum=[True, False, False])
    ax = piano_roll(s, mark=1.0)
    assert len(ax.patches) == 3
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"drums", "Acoustic Grand Piano"}


def test_show_score_explains_a_missing_musescore(monkeypatch):
    import midigen.playback as pb

    monkeypatch.setattr(pb, "find_musescore", lambda: None)
    with pytest.raises(PlaybackError, match="MuseScore is not installed.*apt-get install musescore3"):
        pb.show_score(two_seconds())


def test_render_cli(tmp_path):
    import subprocess
    import sys

    from conftest import BACH

    out = tmp_path / "x.wav"
    r = subprocess.run([sys.executable, "-m", "midigen", "render", str(BACH / "bwv1.6.mid"), "--out", str(out),
                        "--sample-rate", "8000"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 8000 * 2 * 30  # a minute of 16-bit audio
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"nope")
    r = subprocess.run([sys.executable, "-m", "midigen", "render", str(BACH / "bwv1.6.mid"), "--out", str(out),
                        "--soundfont", str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a SoundFont" in r.stderr
