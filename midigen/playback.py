"""Listen and look: render a `Score` to audio with FluidSynth, play it inline, draw a piano roll.

Rendering uses the FluidSynth C library through pyfluidsynth (via pretty_midi), with the small
General MIDI SoundFont that pretty_midi ships (TimGM6mb.sf2) unless you pass another ``.sf2``.
Nothing is downloaded. Where the FluidSynth library is missing, `render` raises a clear error
(or, with ``fallback=True``, synthesises sine waves and says so).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import PlaybackError
from .midi import DRUMS, Score, read_midi

DEFAULT_SAMPLE_RATE = 22050


def default_soundfont() -> Path:
    """pretty_midi's bundled General MIDI SoundFont."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth loads libfluidsynth on import)
    except (ImportError, OSError):
        return False
    return True


def _as_score(x) -> Score:
    return x if isinstance(x, Score) else read_midi(x)


def _check_soundfont(sf2) -> Path:
    p = Path(sf2)
    if not p.is_file():
        raise PlaybackError(f"{p}: SoundFont not found")
    with open(p, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise PlaybackError(f"{p}: not a SoundFont 2 file (expected a RIFF 'sfbk' header)")
    return p


def render(
    score, sample_rate: int = DEFAULT_SAMPLE_RATE, soundfont=None, fallback: bool = False, seconds: float | None = None
) -> np.ndarray:
    """Render a `Score` or MIDI path to mono float32 audio in [-1, 1].

    ``fallback=True`` uses pretty_midi's sine-wave synthesis when FluidSynth is not installed
    (with a warning), instead of raising `PlaybackError`. ``seconds`` renders only the opening.
    """
    pm = _as_score(score).to_pretty_midi()
    if seconds is not None:  # drop later notes before synthesis: cheap clips of long pieces
        for inst in pm.instruments:
            inst.notes = [n for n in inst.notes if n.start < seconds]
            for n in inst.notes:
                n.end = min(n.end, seconds)
            inst.control_changes = [c for c in inst.control_changes if c.time < seconds]
            inst.pitch_bends = [b for b in inst.pitch_bends if b.time < seconds]
    sf2 = _check_soundfont(soundfont or default_soundfont())
    if not fluidsynth_available():
        msg = (
            "FluidSynth is not available: install the C library (Debian/Ubuntu: "
            "`apt-get install libfluidsynth3`, macOS: `brew install fluid-synth`) and the Python "
            "binding (`pip install pyfluidsynth`)"
        )
        if not fallback:
            raise PlaybackError(msg)
        warnings.warn(msg + "; using sine-wave synthesis instead", stacklevel=2)
        audio = pm.synthesize(fs=sample_rate)
    else:
        audio = pm.fluidsynth(fs=sample_rate, synthesizer=str(sf2))
    audio = np.asarray(audio, np.float32)
    peak = float(np.abs(audio).max(initial=0.0))
    return audio / peak if peak > 0 else audio


def write_wav(audio: np.ndarray, path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Path:
    """Write mono float audio as 16-bit PCM WAV (atomically)."""
    import wave

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return Path(path)


def play(score, sample_rate: int = DEFAULT_SAMPLE_RATE, soundfont=None, seconds: float | None = None):
    """An inline audio player (``IPython.display.Audio``) for a `Score` or MIDI path.

    Falls back to sine-wave synthesis, with a visible warning, where FluidSynth is absent.
    ``seconds`` keeps only the opening, for short clips in notebooks.
    """
    from IPython.display import Audio

    audio = render(score, sample_rate, soundfont, fallback=True, seconds=seconds)
    if seconds is not None:
        audio = audio[: int(seconds * sample_rate)]
    return Audio(audio, rate=sample_rate)


def _instrument_name(key: int) -> str:
    if key == DRUMS:
        return "drums"
    try:
        import pretty_midi

        return pretty_midi.program_to_instrument_name(int(key))
    except Exception:
        return f"program {key}"


def piano_roll(score, ax=None, beats: bool = True, title: str | None = None, mark=None):
    """Draw notes as bars (time x pitch), one colour per instrument; returns the axes.

    ``beats=True`` puts quarter-note beats on the x axis (else ticks). ``mark`` draws a vertical
    line at that time (e.g. where a prompt ends and a continuation begins).
    """
    import matplotlib.pyplot as plt

    s = _as_score(score)
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4))
    x0 = s.start_beats if beats else s.start
    width = (s.end_beats if beats else s.end) - x0
    inst = s.instrument
    cmap = plt.get_cmap("tab10")
    for i, key in enumerate(np.unique(inst)):
        m = inst == key
        ax.barh(s.pitch[m], np.maximum(width[m], 0.05), left=x0[m], height=0.8,
                color=cmap(i % 10), label=_instrument_name(key), edgecolor="none")
    if mark is not None:
        ax.axvline(mark, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("beats" if beats else "ticks")
    ax.set_ylabel("pitch")
    if len(inst):
        # outside the axes, so the legend never hides notes
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    if title or s.path:
        ax.set_title(title or Path(s.path).name)
    return ax


MUSESCORE_NAMES = ("mscore", "musescore", "mscore3", "musescore3", "mscore4", "musescore4", "MuseScore4", "mscore4portable")


def find_musescore() -> str | None:
    """Path of a MuseScore executable, or None (music21 needs one to draw notation)."""
    import shutil

    for name in MUSESCORE_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def show_score(score, measures: int | None = 8):
    """Engrave a `Score` (or MIDI path) as sheet music through music21 and MuseScore.

    Returns an ``IPython.display.Image``; ``measures`` keeps only the opening. Raises
    `PlaybackError` saying how to install MuseScore where it is missing.
    """
    import tempfile

    exe = find_musescore()
    if exe is None:
        raise PlaybackError(
            "MuseScore is not installed, and music21 needs it to draw notation: install it "
            "(Debian/Ubuntu: `apt-get install musescore3`; others: https://musescore.org), "
            "or use piano_roll() instead"
        )
    from IPython.display import Image
    from music21 import environment

    environment.set("musescoreDirectPNGPath", exe)
    stream = _as_score(score).to_music21()
    if measures is not None:
        stream = stream.measures(1, measures)
    with tempfile.TemporaryDirectory() as d:
        png = stream.write("musicxml.png", fp=str(Path(d) / "score.png"))
        return Image(filename=str(png))
