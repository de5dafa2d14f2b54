"""Audio with the real synthesisers (FluidSynth, rustysynth, sine waves); the compressed inline
player and its clips; audio files; the piano roll."""

import io

import numpy as np
import pytest
import soundfile

import midigen
import midigen.playback as pb
from conftest import BACH
from midigen import Score
from midigen.playback import (
    PlaybackError,
    encode_audio,
    fluidsynth_available,
    piano_roll,
    play,
    render,
    rustysynth_available,
    write_audio,
    write_wav,
)

needs_fluidsynth = pytest.mark.skipif(not fluidsynth_available(), reason="libfluidsynth is not installed")
needs_rustysynth = pytest.mark.skipif(not rustysynth_available(), reason="midirenderer is not installed")
SOUNDFONT_SYNTHS = [pytest.param("fluidsynth", marks=needs_fluidsynth), pytest.param("rustysynth", marks=needs_rustysynth)]


def two_seconds():
    # four quarter notes at 120 qpm = 2 s
    return Score.from_notes(pitch=[60, 62, 64, 65], start=[0, 480, 960, 1440], end=[480, 960, 1440, 1920])


def rms(a):
    return float(np.sqrt(np.mean(np.square(a)))) if len(a) else 0.0


def purity(audio, sr, hz):
    """Share of the spectrum's energy within 15 Hz of ``hz``: ~1 for a sine, less for an instrument."""
    spec = np.abs(np.fft.rfft(audio[:sr])) ** 2
    f = np.fft.rfftfreq(min(len(audio), sr), 1 / sr)
    return float(spec[np.abs(f - hz) < 15].sum() / spec.sum())


@needs_fluidsynth
def test_render_is_audible_and_right_length():
    audio = render(two_seconds(), sample_rate=16000)
    assert audio.dtype == np.float32
    seconds = len(audio) / 16000
    assert 2.0 <= seconds <= 4.5  # the notes plus the SoundFont's release tail
    assert rms(audio[: 16000 * 2]) > 0.01  # not silent
    assert np.abs(audio).max() <= 1.0


@pytest.mark.parametrize("synth", SOUNDFONT_SYNTHS)
def test_soundfont_synths_sound_like_instruments_not_sines(synth):
    a4 = Score.from_notes(pitch=[69], start=[0], end=[960])  # A4 (440 Hz) for one second
    audio = render(a4, 16000, synth=synth)
    sine = render(a4, 16000, synth="sine")
    assert rms(audio) > 0.01 and rms(sine) > 0.01
    assert purity(sine, 16000, 440) > 0.97  # all of a sine is its one frequency
    assert purity(audio, 16000, 440) < 0.95  # a piano's harmonics are not


@pytest.mark.parametrize("synth", SOUNDFONT_SYNTHS)
def test_drums_are_audible(synth):
    kit = Score.from_notes(pitch=[36, 38, 42, 46] * 2, start=np.arange(8) * 240, end=np.arange(8) * 240 + 120,
                           is_drum=True)
    assert rms(render(kit, 16000, synth=synth)) > 0.02
    assert rms(render(kit, 16000, synth="sine")) == 0.0  # sine waves cannot play drums: why they come last


@needs_rustysynth
def test_without_fluidsynth_auto_uses_rustysynth(monkeypatch):
    monkeypatch.setattr(pb, "fluidsynth_available", lambda: False)
    assert pb.available_synths() == ["rustysynth", "sine"]
    player = play(two_seconds(), sample_rate=16000)
    assert player.synth == "rustysynth" and "sine" not in player.note


def test_without_any_soundfont_synth(monkeypatch):
    monkeypatch.setattr(pb, "fluidsynth_available", lambda: False)
    monkeypatch.setattr(pb, "rustysynth_available", lambda: False)
    with pytest.raises(PlaybackError, match="libfluidsynth3.*pip install midirenderer"):
        render(two_seconds())
    with pytest.warns(UserWarning, match="using sine waves"):
        player = play(two_seconds(), sample_rate=8000)
    assert player.synth == "sine" and "sine waves" in player.note
    with pytest.raises(PlaybackError, match="rustysynth is not available"):
        render(two_seconds(), synth="rustysynth")
    with pytest.raises(PlaybackError, match="unknown synth"):
        render(two_seconds(), synth="moog")


def test_bad_soundfont_is_named(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(PlaybackError, match="bad.sf2: not a SoundFont"):
        render(two_seconds(), soundfont=bad)
    with pytest.raises(PlaybackError, match="SoundFont not found"):
        render(two_seconds(), soundfont=tmp_path / "missing.sf2")


def test_start_and_seconds_render_that_stretch():
    # C4 in the first second, A4 (440 Hz) in the third
    s = Score.from_notes(pitch=[60, 69], start=[0, 1920], end=[960, 2880])
    clip = render(s, 8000, start=2, seconds=1, fallback=True)
    assert len(clip) == 8000
    assert purity(clip, 8000, 440) > 5 * purity(clip, 8000, 262)
    with pytest.raises(PlaybackError, match="start must be >= 0"):
        render(s, 8000, start=-1)


def test_play_embeds_compressed_audio_and_says_what_it_cut():
    from IPython.display import Audio

    chorale = midigen.read_midi(BACH / "bwv1.6.mid")  # 63 s
    player = play(chorale, seconds=20)
    assert isinstance(player, Audio) and player.mimetype == "audio/ogg"
    audio, sr = soundfile.read(io.BytesIO(player.data))
    assert sr == 22050 and abs(len(audio) / sr - 20) < 0.1
    wav_bytes_per_second = 2 * 22050
    assert len(player.data) / 20 < wav_bytes_per_second / 10  # a tenth of WAV, or less
    html = player._repr_html_()
    assert 'type="audio/ogg"' in html and "data:audio/ogg;base64," in html
    assert "playing 0:00-0:20 of 1:03" in player.note and "start=20" in player.note and player.note in html
    whole = play(two_seconds(), sample_rate=8000)  # shorter than the default minute: no note
    assert whole.note == "" and whole.total_seconds == pytest.approx(2.0)
    later = play(chorale, start=60, seconds=10, format="mp3")
    assert later.mimetype == "audio/mpeg" and "playing 1:00-1:03 of 1:03" in later.note and "start=" not in later.note


def test_audio_files_by_suffix(tmp_path):
    audio = render(two_seconds(), 8000, fallback=True)
    for suffix, fmt in ((".wav", "WAV"), (".ogg", "OGG"), (".flac", "FLAC"), (".mp3", "MP3")):
        p = write_audio(audio, tmp_path / f"x{suffix}", 8000)
        info = soundfile.info(str(p))
        assert info.format == fmt and info.samplerate == 8000 and info.frames >= 8000
    with pytest.raises(PlaybackError, match="unknown audio format"):
        write_audio(audio, tmp_path / "x.aiff", 8000)
    import wave

    with wave.open(str(write_wav(audio, tmp_path / "y.wav", 8000))) as w:
        assert w.getframerate() == 8000 and w.getnframes() == len(audio) and w.getsampwidth() == 2
    long = np.sin(np.arange(22050 * 240) * 0.05).astype(np.float32)  # four minutes at once: no crash
    assert len(encode_audio(long, 22050, "ogg")) < len(long) * 2 / 10


def test_instrument_names():
    assert midigen.instrument_name(0) == "Acoustic Grand Piano"
    assert midigen.instrument_name(40) == "Violin"
    assert midigen.instrument_name(128) == "Drums"
    with pytest.raises(ValueError):
        midigen.instrument_name(129)


def test_piano_roll_draws_each_instrument():
    import matplotlib

    matplotlib.use("Agg")
    s = Score.from_notes(pitch=[36, 60, 64], start=[0, 0, 480], end=[240, 960, 960], is_drum=[True, False, False])
    ax = piano_roll(s, mark=1.0)
    assert len(ax.patches) == 3
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"Drums", "Acoustic Grand Piano"}


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


def test_score_instruments_table():
    s = Score.from_notes(pitch=[36, 60, 64, 40], start=[0, 0, 480, 0], end=[240, 960, 960, 480],
                         program=[0, 0, 0, 33], is_drum=[True, False, False, False])
    assert s.instruments == {0: "Acoustic Grand Piano", 33: "Electric Bass (finger)", 128: "Drums"}
    assert Score.from_notes([], [], []).instruments == {}


def test_play_and_piano_roll_take_tokens():
    import matplotlib

    matplotlib.use("Agg")
    tok = midigen.Tokenizer()
    s = Score.from_notes(pitch=[36, 60, 64], start=[0, 0, 480], end=[240, 960, 960], is_drum=[True, False, False])
    tokens = tok.encode(s)  # carries its tokenizer
    assert len(piano_roll(tokens).patches) == 3
    bare = midigen.Tokens(tokens.ids, tokens.steps)  # made by hand: no tokenizer
    with pytest.raises(TypeError, match="pass tokenizer="):
        piano_roll(bare)
    assert len(piano_roll(bare, tokenizer=tok).patches) == 3
    assert len(piano_roll(tokens.ids, tokenizer=tok).patches) == 3  # bare ids with their tokenizer
    with pytest.raises(TypeError, match="pass tokenizer="):
        play(bare, synth="sine")
    with pytest.raises(TypeError, match="expected a Score, a MIDI file path or Tokens"):
        play(3.5)
    audio = render(tokens, 8000, fallback=True, synth="sine")
    assert rms(audio) > 0.01
    assert play(tokens, sample_rate=8000, synth="sine").total_seconds == pytest.approx(1.0)
