"""MIDI files in and out: the `Score`, a file's notes as numpy arrays.

Everything downstream (the three encodings, the corpus builder, playback) starts from a
`Score`. Parsing goes through symusic (C++; parses millions of notes per second, see
``benchmarks/encode.py``); conversions from and to ``pretty_midi`` and ``music21`` go through
MIDI bytes, so they are exact and share one well-tested code path.

Malformed input is the rule at Lakh scale, not the exception: `read_midi` checks the header
itself (symusic accepts a division of 0, for instance, and raises a bare ``RuntimeError`` for
everything else) and turns every failure into a `MidiError` that names the file and the problem.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import atomic
from .assets import MIDI_SUFFIXES as MIDI_SUFFIXES  # (re-exported: where MIDI files are found)
from .assets import find_midi_files as find_midi_files
from .errors import MidiError
from .instruments import instrument_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    import music21
    import pretty_midi
    import symusic
    from numpy.typing import ArrayLike

#: The instrument key used for drums (channel 10). Pitched instruments use their program 0..127.
DRUMS = 128

# Ticks are int32 inside symusic; a file whose events run past this overflowed while parsing.
_MAX_TICK = 2**31 - 1


@dataclass
class Score:
    """The notes, tempo changes and time signatures of one piece, as numpy arrays.

    Notes are parallel arrays of equal length (in file order, track by track; `sorted` orders
    them by start, instrument and pitch):
    ``program`` (0..127), ``is_drum``, ``pitch`` (0..127), ``start``/``end`` in ticks and
    ``velocity``. ``start_beats``/``end_beats`` give the same times in quarter-note beats.
    Tempo changes are ``tempo_ticks``/``tempo_qpm`` (quarter notes per minute); time signatures
    ``ts_ticks``/``ts_numerator``/``ts_denominator``. ``path`` is where it came from, if a file.
    """

    ticks_per_quarter: int
    program: np.ndarray
    is_drum: np.ndarray
    pitch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    velocity: np.ndarray
    tempo_ticks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tempo_qpm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    ts_ticks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ts_numerator: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    ts_denominator: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    path: str | None = None
    part: np.ndarray | None = None
    part_names: tuple[str, ...] = ()

    def __post_init__(self):
        if self.part is None:  # one part per instrument
            self.part = np.unique(self.instrument, return_inverse=True)[1].astype(np.int16).reshape(-1)
        self.part = np.asarray(self.part, np.int16)
        self.part_names = tuple(self.part_names)

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.pitch)

    @property
    def n_notes(self) -> int:
        return len(self.pitch)

    @property
    def instrument(self) -> np.ndarray:
        """Instrument key per note: the program, or `DRUMS` (128) for drum notes."""
        return np.where(self.is_drum, DRUMS, self.program).astype(np.int16)

    @property
    def instruments(self) -> dict[int, str]:
        """The instruments that play, ``{key: General MIDI name}`` by key (128, `DRUMS`: ``"Drums"``).

        >>> Score.from_notes([60, 36], [0, 0], [480, 480], program=[33, 0], is_drum=[False, True]).instruments
        {33: 'Electric Bass (finger)', 128: 'Drums'}
        """
        return {int(k): instrument_name(k) for k in np.unique(self.instrument)}

    @property
    def n_parts(self) -> int:
        return int(self.part.max(initial=-1)) + 1

    @property
    def start_beats(self) -> np.ndarray:
        return self.start / self.ticks_per_quarter

    @property
    def end_beats(self) -> np.ndarray:
        return self.end / self.ticks_per_quarter

    @property
    def initial_tempo(self) -> float:
        return float(self.tempo_qpm[0]) if len(self.tempo_qpm) else 120.0

    def __repr__(self) -> str:
        name = f" {Path(self.path).name!r}" if self.path else ""
        instruments = sorted(set(self.instrument.tolist()))
        return (
            f"Score({name.strip() or 'in-memory'}, notes={self.n_notes}, "
            f"instruments={instruments}, beats={self.end_beats.max(initial=0):.1f}, "
            f"tempo={self.initial_tempo:.1f} qpm, tpq={self.ticks_per_quarter})"
        )

    # ----------------------------------------------------------------- build
    @classmethod
    def from_notes(
        cls,
        pitch: ArrayLike,
        start: ArrayLike,
        end: ArrayLike,
        *,
        program: ArrayLike = 0,
        is_drum: ArrayLike = False,
        velocity: ArrayLike = 90,
        ticks_per_quarter: int = 480,
        tempos: Iterable[tuple[int, float]] = ((0, 120.0),),
        time_signatures: Iterable[tuple[int, int, int]] = ((0, 4, 4),),
        path: str | None = None,
        part: ArrayLike | None = None,
        part_names: Iterable[str] = (),
    ) -> Score:
        """Build a score from note lists (scalars broadcast), sorting the notes.

        ``part`` (per note; default: one part per instrument) and ``part_names`` as in `Score`."""
        pitch = np.asarray(pitch, np.int16)
        n = len(pitch)
        b = lambda x, dt: np.broadcast_to(np.asarray(x, dt), (n,)).copy()  # noqa: E731
        tempos = np.asarray(tempos, np.float64).reshape(-1, 2)
        ts = np.asarray(time_signatures, np.int64).reshape(-1, 3)
        return cls(
            ticks_per_quarter=int(ticks_per_quarter),
            program=b(program, np.int16),
            is_drum=b(is_drum, bool),
            pitch=pitch,
            start=b(start, np.int64),
            end=b(end, np.int64),
            velocity=b(velocity, np.int16),
            tempo_ticks=tempos[:, 0].astype(np.int64),
            tempo_qpm=tempos[:, 1].copy(),
            ts_ticks=ts[:, 0].copy(),
            ts_numerator=ts[:, 1].astype(np.int16),
            ts_denominator=ts[:, 2].astype(np.int16),
            path=path,
            part=None if part is None else b(part, np.int16),
            part_names=tuple(part_names),
        ).sorted()

    def sorted(self) -> Score:
        """The same score with notes ordered by (start, instrument, pitch, end, part)."""
        order = np.lexsort((self.part, self.end, self.pitch, self.instrument, self.start))
        if np.all(order[1:] > order[:-1]):
            return self
        return self.select(order)

    def select(self, notes: np.ndarray) -> Score:
        """A copy with only these notes (a boolean mask or indices, in that order); tempo map, time
        signatures and part names unchanged."""
        out = self.copy()
        for name in ("program", "is_drum", "pitch", "start", "end", "velocity", "part"):
            setattr(out, name, getattr(self, name)[notes])
        return out

    def copy(self) -> Score:
        kw = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return Score(**kw)

    # ----------------------------------------------------------------- I/O
    @classmethod
    def from_file(cls, path: str | os.PathLike, *, require_notes: bool = True) -> Score:
        return read_midi(path, require_notes=require_notes)

    def to_file(self, path: str | os.PathLike) -> Path:
        return write_midi(self, path)

    def to_bytes(self) -> bytes:
        return _to_symusic(self).dumps_midi()

    @classmethod
    def from_bytes(cls, data: bytes, *, path: str | os.PathLike | None = None, require_notes: bool = True) -> Score:
        return _parse(data, path, require_notes)

    def to_pretty_midi(self) -> pretty_midi.PrettyMIDI:
        """A ``pretty_midi.PrettyMIDI`` with the same notes, tempi and time signatures."""
        import pretty_midi

        return pretty_midi.PrettyMIDI(io.BytesIO(self.to_bytes()))

    @classmethod
    def from_pretty_midi(cls, pm: pretty_midi.PrettyMIDI, *, require_notes: bool = True) -> Score:
        buf = io.BytesIO()
        pm.write(buf)
        return _parse(buf.getvalue(), None, require_notes)

    def to_music21(self) -> music21.stream.Score:
        """A ``music21.stream.Score`` (parsed by music21 from this score's MIDI bytes)."""
        from music21 import midi as m21midi

        mf = m21midi.MidiFile()
        mf.readstr(self.to_bytes())
        return m21midi.translate.midiFileToStream(mf)

    @classmethod
    def from_music21(cls, stream: music21.stream.Stream, *, require_notes: bool = True) -> Score:
        from music21 import midi as m21midi

        mf = m21midi.translate.streamToMidiFile(stream)
        return _parse(mf.writestr(), None, require_notes)


# --------------------------------------------------------------------- reading
def read_midi(path: str | os.PathLike, *, require_notes: bool = True) -> Score:
    """Read a ``.mid`` file into a `Score`.

    Raises `MidiError` naming the file for every problem: missing, empty, not MIDI, truncated
    or corrupt, an unsupported time division, no notes (unless ``require_notes=False``).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise MidiError(p, "no such file") from None
    except IsADirectoryError:
        raise MidiError(p, "is a directory, not a MIDI file") from None
    except OSError as exc:
        raise MidiError(p, f"cannot read file: {exc.strerror or exc}") from None
    return _parse(data, str(p), require_notes)


def _check_header(data: bytes, path: str | os.PathLike | None) -> None:
    if len(data) == 0:
        raise MidiError(path, "file is empty (0 bytes)")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        raise MidiError(path, "RIFF-wrapped MIDI (RMID) is not supported; extract the MThd chunk")
    if data[:4] != b"MThd":
        raise MidiError(path, f"not a MIDI file (starts with {data[:4]!r}, expected b'MThd')")
    if len(data) < 14:
        raise MidiError(path, f"truncated header ({len(data)} bytes, a MIDI header needs 14)")
    length, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if length < 6:
        raise MidiError(path, f"bad header length {length}")
    if fmt > 2:
        raise MidiError(path, f"unknown MIDI format {fmt}")
    if division & 0x8000:
        raise MidiError(path, "SMPTE time division is not supported (only ticks per quarter note)")
    if division == 0:
        raise MidiError(path, "ticks per quarter note is 0: no musical time can be derived")
    if ntracks == 0:
        raise MidiError(path, "header declares 0 tracks")
    if data.find(b"MTrk", 14) < 0:
        raise MidiError(path, "no track chunk (MTrk) after the header")


def _parse(data: bytes, path: str | os.PathLike | None, require_notes: bool) -> Score:
    import symusic

    _check_header(data, path)
    try:
        s = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises bare RuntimeError for every kind of corruption
        msg = str(exc).strip() or type(exc).__name__
        raise MidiError(path, f"corrupt or truncated MIDI data ({msg})") from None
    return _from_symusic(s, path, require_notes)


def _from_symusic(s: symusic.Score, path: str | os.PathLike | None, require_notes: bool) -> Score:
    tpq = int(s.ticks_per_quarter)
    if tpq <= 0:
        raise MidiError(path, f"ticks per quarter note is {tpq}")
    # Collect notes track by track; concatenating once keeps this O(notes) with few numpy calls.
    arrays, programs, drums, counts, names = [], [], [], [], []
    for track in s.tracks:
        n = track.note_num()
        if n:
            arrays.append(track.notes.numpy())
            programs.append(track.program)
            drums.append(track.is_drum)
            counts.append(n)
            names.append(str(track.name))
    if arrays:
        cat = lambda k: np.concatenate([a[k] for a in arrays]) if len(arrays) > 1 else arrays[0][k]  # noqa: E731
        start = cat("time").astype(np.int64)
        dur = cat("duration").astype(np.int64)
        pitch = cat("pitch").astype(np.int16)
        velocity = cat("velocity").astype(np.int16)
        program = np.repeat(np.asarray(programs, np.int16), counts)
        is_drum = np.repeat(np.asarray(drums, bool), counts)
        part = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
    else:
        part = np.zeros(0, np.int16)
        start = dur = np.zeros(0, np.int64)
        pitch = velocity = program = np.zeros(0, np.int16)
        is_drum = np.zeros(0, bool)
    if require_notes and len(pitch) == 0:
        raise MidiError(path, "no notes in the file")
    if len(start) and (start.min() < 0 or dur.min() < 0 or (start + dur).max() >= _MAX_TICK):
        raise MidiError(path, "note times overflow (absurd delta times)")
    t = s.tempos.numpy()
    ts = s.time_signatures.numpy()
    mspq = t["mspq"].astype(np.float64)
    if len(mspq) and mspq.min() <= 0:
        # A tempo of 0 microseconds per quarter is meaningless; drop those events.
        keep = mspq > 0
        t = {k: v[keep] for k, v in t.items()}
        mspq = mspq[keep]
    den = ts["denominator"].astype(np.int16)
    good_ts = den > 0
    score = Score(
        ticks_per_quarter=tpq,
        program=program,
        is_drum=is_drum,
        pitch=pitch,
        start=start,
        end=start + dur,
        velocity=velocity,
        tempo_ticks=t["time"].astype(np.int64),
        tempo_qpm=60_000_000.0 / mspq,
        ts_ticks=ts["time"].astype(np.int64)[good_ts],
        ts_numerator=ts["numerator"].astype(np.int16)[good_ts],
        ts_denominator=den[good_ts],
        path=None if path is None else str(path),
        part=part,
        part_names=tuple(names),
    )
    return score


# --------------------------------------------------------------------- writing
def _to_symusic(score: Score):
    import symusic

    s = symusic.Score(int(score.ticks_per_quarter))
    inst = score.instrument
    names = score.part_names
    # one track per part (and instrument, should a part mix them), ordered by instrument, then part
    # (without parts, one track per instrument as before)
    track_key = inst.astype(np.int64) * 65536 + score.part
    for tk in np.unique(track_key):
        m = track_key == tk
        key, k = divmod(int(tk), 65536)
        drum = bool(key == DRUMS)
        program = int(score.program[m][0]) if drum else key
        name = names[k] if k < len(names) and names[k] else ("Drums" if drum else f"Program {program}")
        track = symusic.Track(name, program, drum)
        track.notes = symusic.Note.from_numpy(
            score.start[m].astype(np.int32),
            np.maximum(score.end[m] - score.start[m], 0).astype(np.int32),
            score.pitch[m].astype(np.int8),
            np.clip(score.velocity[m], 1, 127).astype(np.int8),
        )
        s.tracks.append(track)
    if len(score.tempo_ticks):
        s.tempos = symusic.Tempo.from_numpy(
            score.tempo_ticks.astype(np.int32),
            np.round(60_000_000.0 / score.tempo_qpm).astype(np.int32),
        )
    if len(score.ts_ticks):
        s.time_signatures = symusic.TimeSignature.from_numpy(
            score.ts_ticks.astype(np.int32),
            score.ts_numerator.astype(np.uint8),
            score.ts_denominator.astype(np.uint8),
        )
    return s


def write_midi(score: Score, path: str | os.PathLike) -> Path:
    """Write ``score`` to ``path`` as a standard MIDI file (atomically: temp file + rename)."""
    return atomic.write_bytes(path, score.to_bytes())
