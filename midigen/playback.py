"""Listen and look: render a `Score` to audio, play it inline (compressed), draw a piano roll.

Three synthesisers, tried in this order by ``synth="auto"``:

1. ``"fluidsynth"``: the FluidSynth C library through pyfluidsynth (via pretty_midi);
2. ``"rustysynth"``: a SoundFont synthesiser with no system library (the ``midirenderer``
   wheel, rustysynth inside), for machines without FluidSynth: the same ``.sf2``, the same
   instruments and drums;
3. ``"sine"``: pretty_midi's sine waves, only with ``fallback=True`` and a warning.

Both SoundFont synthesisers play pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2)
unless you pass another ``.sf2``; nothing is downloaded. `play` embeds Ogg Vorbis (about a
twentieth of the bytes of WAV) and, by default, only the first minute, saying what it cut.
Sheet music lives in `midigen.notation` (`show_score` is re-exported here).
"""

from __future__ import annotations

import html
import io
import os
import warnings
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import atomic
from .encoding.tokenizer import as_score
from .errors import PlaybackError
from .instruments import instrument_name  # noqa: F401  (midigen.playback.instrument_name, as before)
from .midi import Score
from .notation import find_musescore, show_score  # noqa: F401  (the historical home of show_score)

if TYPE_CHECKING:
    import pretty_midi
    from IPython.display import Audio
    from matplotlib.axes import Axes

    from .encoding import Tokenizer, Tokens

    Music = Score | str | os.PathLike | Tokens  # what playback takes: a score, a MIDI file, tokens

DEFAULT_SAMPLE_RATE = 22050
#: How much of a piece `play` embeds unless told otherwise (seconds).
DEFAULT_PLAY_SECONDS = 60.0
SYNTHS = ("fluidsynth", "rustysynth", "sine")
#: Audio formats by file suffix: (libsndfile format, subtype, MIME type).
AUDIO_FORMATS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}
#: libsndfile's compression level for Ogg Vorbis and MP3 (0 best quality .. 1 smallest).
LOSSY_COMPRESSION = 0.9


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


def rustysynth_available() -> bool:
    try:
        import midirenderer  # noqa: F401
    except ImportError:
        return False
    return True


def available_synths() -> list[str]:
    """The synthesisers usable here, in the order ``synth="auto"`` tries them."""
    found = [name for name, ok in (("fluidsynth", fluidsynth_available), ("rustysynth", rustysynth_available)) if ok()]
    return found + ["sine"]


def _as_score(x: Music, tokenizer: Tokenizer | None = None) -> Score:
    """A `Score`, a MIDI path, or `Tokens` (decoded with ``tokenizer`` or the one they carry)."""
    return as_score(x, tokenizer)


def _check_soundfont(sf2: str | os.PathLike) -> Path:
    p = Path(sf2)
    if not p.is_file():
        raise PlaybackError(f"{p}: SoundFont not found")
    with open(p, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise PlaybackError(f"{p}: not a SoundFont 2 file (expected a RIFF 'sfbk' header)")
    return p


_NO_SOUNDFONT_SYNTH = (
    "no SoundFont synthesiser is available: install FluidSynth (Debian/Ubuntu: `apt-get install "
    "libfluidsynth3`, macOS: `brew install fluid-synth`; plus `pip install pyfluidsynth`) or "
    "`pip install midirenderer`"
)


def _choose_synth(synth: str, fallback: bool) -> str:
    if synth not in ("auto", *SYNTHS):
        raise PlaybackError(f"unknown synth {synth!r}: use 'auto' or one of {', '.join(SYNTHS)}")
    if synth == "fluidsynth" and not fluidsynth_available():
        raise PlaybackError("FluidSynth is not available: " + _NO_SOUNDFONT_SYNTH.split(": ", 1)[1])
    if synth == "rustysynth" and not rustysynth_available():
        raise PlaybackError("rustysynth is not available: `pip install midirenderer`")
    if synth != "auto":
        return synth
    best = available_synths()[0]
    if best == "sine":
        if not fallback:
            raise PlaybackError(_NO_SOUNDFONT_SYNTH)
        warnings.warn(_NO_SOUNDFONT_SYNTH + "; using sine waves instead", stacklevel=3)
    return best


def _clip(pm: pretty_midi.PrettyMIDI, start: float, seconds: float | None) -> None:
    """Keep what sounds in [start, start + seconds) of a PrettyMIDI, shifted to begin at 0."""
    stop = np.inf if seconds is None else start + seconds
    for inst in pm.instruments:
        kept = []
        for n in inst.notes:
            if n.end > start and n.start < stop:
                n.start, n.end = max(n.start, start) - start, min(n.end, stop) - start
                kept.append(n)
        inst.notes = kept
        inst.control_changes = [c for c in inst.control_changes if start <= c.time < stop]
        inst.pitch_bends = [b for b in inst.pitch_bends if start <= b.time < stop]
        for x in (*inst.control_changes, *inst.pitch_bends):
            x.time -= start


def _lowpass_resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample mono audio: a windowed-sinc low-pass below the new Nyquist, then interpolation."""
    if src == dst or len(audio) == 0:
        return audio
    if dst < src:
        cutoff = 0.45 * dst / src  # in cycles per input sample
        k = np.arange(-48, 49)
        taps = 2 * cutoff * np.sinc(2 * cutoff * k) * np.hanning(len(k))
        audio = np.convolve(audio, (taps / taps.sum()).astype(np.float32), mode="same")
    n = int(round(len(audio) * dst / src))
    return np.interp(np.arange(n) * (src / dst), np.arange(len(audio)), audio).astype(np.float32)


@lru_cache(maxsize=2)
def _soundfont_bytes(path: str, mtime: float) -> bytes:  # noqa: ARG001  (mtime: in the cache key)
    return Path(path).read_bytes()


def _render_rustysynth(pm: pretty_midi.PrettyMIDI, sf2: Path, sample_rate: int) -> np.ndarray:
    import midirenderer
    import soundfile

    buf = io.BytesIO()
    pm.write(buf)
    wav = midirenderer.render_wave_from(_soundfont_bytes(str(sf2), sf2.stat().st_mtime), buf.getvalue())
    stereo, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return _lowpass_resample(stereo.mean(axis=1), rate, sample_rate)


def render(
    score: Music,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    soundfont: str | os.PathLike | None = None,
    fallback: bool = False,
    seconds: float | None = None,
    start: float = 0.0,
    synth: str = "auto",
    tokenizer: Tokenizer | None = None,
) -> np.ndarray:
    """Render a `Score`, MIDI path or `Tokens` to mono float32 audio in [-1, 1] (peak-normalised).

    ``synth``: ``"auto"`` (FluidSynth, else rustysynth), or one of `SYNTHS` to force it.
    Without a SoundFont synthesiser ``auto`` raises `PlaybackError`, or with ``fallback=True``
    uses sine waves with a warning. ``start``/``seconds`` render only that stretch (in seconds
    of music), cut to at most ``seconds`` of audio.
    """
    pm = _as_score(score, tokenizer).to_pretty_midi()
    if start < 0 or (seconds is not None and seconds <= 0):
        raise PlaybackError(f"start={start} and seconds={seconds}: start must be >= 0 and seconds > 0")
    if start or seconds is not None:  # drop the rest before synthesis: cheap clips of long pieces
        _clip(pm, float(start), seconds)
    sf2 = _check_soundfont(soundfont or default_soundfont())
    name = _choose_synth(synth, fallback)
    if name == "fluidsynth":
        audio = pm.fluidsynth(fs=sample_rate, synthesizer=str(sf2))
    elif name == "rustysynth":
        audio = _render_rustysynth(pm, sf2, sample_rate)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):  # silence (drums only): 0/0
            audio = pm.synthesize(fs=sample_rate)
    audio = np.nan_to_num(np.asarray(audio, np.float32))  # pretty_midi's sine of silence is 0/0
    if seconds is not None and len(audio) > seconds * sample_rate:
        audio = audio[: int(seconds * sample_rate)].copy()
        fade = min(len(audio), int(0.02 * sample_rate))  # no click where a sounding note is cut
        audio[len(audio) - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    peak = float(np.abs(audio).max(initial=0.0))
    return audio / peak if peak > 0 else audio


# ------------------------------------------------------------------ audio files and bytes
def _format(fmt: str) -> tuple[str, str, str]:
    try:
        return AUDIO_FORMATS[fmt.lower().lstrip(".")]
    except KeyError:
        raise PlaybackError(f"unknown audio format {fmt!r}: use one of {', '.join(AUDIO_FORMATS)}") from None


def encode_audio(audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, format: str = "ogg",
                 compression: float = LOSSY_COMPRESSION) -> bytes:
    """Mono float audio as the bytes of an audio file: ``"ogg"`` (Vorbis), ``"mp3"``, ``"flac"``, ``"wav"``.

    ``compression`` (0..1, libsndfile's compression level) trades size for quality in the lossy
    formats: the default 0.9 gives Vorbis about 32 kbit/s at 22.05 kHz mono (a tenth of WAV or less).
    """
    import soundfile

    container, subtype, _ = _format(format)
    buf = io.BytesIO()
    extra = {"compression_level": compression} if container in ("OGG", "MP3") else {}
    audio = np.clip(np.asarray(audio, np.float32), -1, 1)
    with soundfile.SoundFile(buf, "w", sample_rate, 1, subtype, format=container, **extra) as f:
        for i in range(0, len(audio), 1 << 16):  # in blocks: libsndfile's Vorbis encoder crashes
            f.write(audio[i:i + (1 << 16)])      # on a few million samples written at once
    return buf.getvalue()


def write_audio(audio: np.ndarray, path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Path:
    """Write mono float audio to ``path`` (atomically), the format chosen by its suffix:
    ``.wav`` (16-bit PCM), ``.ogg`` (Vorbis), ``.flac`` or ``.mp3``."""
    return atomic.write_bytes(path, encode_audio(audio, sample_rate, Path(path).suffix or "(no suffix)"))


def write_wav(audio: np.ndarray, path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Path:
    """Write mono float audio as 16-bit PCM WAV (atomically), whatever the suffix."""
    return atomic.write_bytes(path, encode_audio(audio, sample_rate, "wav"))


# ------------------------------------------------------------------ the inline player
def _clock(t: float) -> str:
    t = int(round(t))
    return f"{t // 60}:{t % 60:02d}"


@cache  # one class (IPython imported on first use), so isinstance works
def _player_class():
    from IPython.display import Audio

    class Player(Audio):
        """An inline ``<audio>`` player of compressed audio, with a line saying what was cut."""

        def __init__(self, data: bytes, mimetype: str, note: str, *, start: float, seconds: float, total: float,
                     synth: str):
            super().__init__(data=data, embed=True)
            self.mimetype = mimetype  # IPython labels raw bytes audio/wav
            self.note, self.start, self.seconds, self.total_seconds, self.synth = note, start, seconds, total, synth

        def _repr_html_(self):
            out = super()._repr_html_()
            if self.note:
                out += f'<div style="font-size:smaller;opacity:0.75">{html.escape(self.note)}</div>'
            return out

        def __repr__(self):
            clip = f"{_clock(self.start)}-{_clock(self.start + self.seconds)} of {_clock(self.total_seconds)}"
            return f"<Player {clip}, {self.mimetype}, {len(self.data) / 1e3:.0f} kB, {self.synth}>"

    return Player


def play(
    score: Music,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    soundfont: str | os.PathLike | None = None,
    seconds: float | None = DEFAULT_PLAY_SECONDS,
    start: float = 0.0,
    synth: str = "auto",
    format: str = "ogg",
    tokenizer: Tokenizer | None = None,
) -> Audio:
    """An inline audio player (an ``IPython.display.Audio``) for a `Score`, MIDI path or `Tokens`.

    Embeds ``seconds`` of music from ``start`` (default: the first minute) as Ogg Vorbis
    (``format="mp3"``/``"wav"`` otherwise); when that is not the whole piece a line under the
    player says what plays and how to hear the rest. ``seconds=None`` plays everything. Falls
    back to sine waves, with a warning, where no SoundFont synthesiser is installed. `Tokens`
    decode with ``tokenizer``, else the tokenizer they carry (from ``tok.encode`` or ``generate``).
    """
    s = _as_score(score, tokenizer)
    total = float(s.to_pretty_midi().get_end_time())
    name = _choose_synth(synth, fallback=True)
    audio = render(s, sample_rate, soundfont, fallback=True, seconds=seconds, start=start, synth=name)
    shown = len(audio) / sample_rate
    note = ""
    if start > 0 or (seconds is not None and start + seconds < total):
        end = min(total, start + (seconds or total))
        hint = "pass seconds=None for all of it"
        if end < total:
            hint += f", or start={end:g} for what follows"
        note = f"playing {_clock(start)}-{_clock(end)} of {_clock(total)}; {hint}"
    if name == "sine":
        note = (note + "; " if note else "") + "sine waves (no SoundFont synthesiser installed)"
    _, _, mimetype = _format(format)
    return _player_class()(encode_audio(audio, sample_rate, format), mimetype, note,
                           start=float(start), seconds=shown, total=total, synth=name)


# ------------------------------------------------------------------ piano roll
def piano_roll(score: Music, ax: Axes | None = None, beats: bool = True, title: str | None = None,
               mark: float | None = None, tokenizer: Tokenizer | None = None) -> Axes:
    """Draw notes as bars (time x pitch), one colour per part (the chorales' four voices, or each
    instrument's track), labelled with the part's name; returns the axes.

    ``score``: a `Score`, MIDI path or `Tokens` (decoded with ``tokenizer``, else their own).
    ``beats=True`` puts quarter-note beats on the x axis (else ticks). ``mark`` draws a vertical
    line at that time (e.g. where a prompt ends and a continuation begins).
    """
    import matplotlib.pyplot as plt

    s = _as_score(score, tokenizer)
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4))
    x0 = s.start_beats if beats else s.start
    width = (s.end_beats if beats else s.end) - x0
    cmap = plt.get_cmap("tab10")
    names = s.instruments
    for i, part in enumerate(np.unique(s.part)):
        m = s.part == part
        label = s.part_names[part] if part < len(s.part_names) and s.part_names[part] else None
        label = label or names.get(int(s.instrument[np.argmax(m)]), f"part {part}")
        ax.barh(s.pitch[m], np.maximum(width[m], 0.05), left=x0[m], height=0.8,
                color=cmap(i % 10), label=label, edgecolor="none")
    if mark is not None:
        ax.axvline(mark, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("beats" if beats else "ticks")
    ax.set_ylabel("pitch")
    if s.n_notes:
        # outside the axes, so the legend never hides notes
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    if title or s.path:
        ax.set_title(title or Path(s.path).name)
    return ax
