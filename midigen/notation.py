"""Sheet music without MuseScore: `Score` -> music21 -> MusicXML -> verovio -> SVG.

One staff per part, labelled. A part is a track of the MIDI file the score was read from, when
the score still holds exactly that file's notes (so a Bach chorale shows Soprano, Alto, Tenor
and Bass), and otherwise an instrument (program, named from General MIDI), since a `Score` has
no part identity of its own yet. A part spanning both clefs widely (a piano's two hands) gets a
grand staff split at middle C. Drums are left out, with a note saying so. The key signature is
estimated (music21's key analysis) because MIDI files rarely carry a reliable one.

`show_score` returns an object that Jupyter and VS Code draw inline (SVG inside HTML);
`to_svg` and `to_musicxml` give the text; `write_score` writes ``.svg`` or ``.musicxml``, and
``.pdf``/``.png`` through MuseScore where it is installed (only there is MuseScore needed).
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import atomic
from .errors import PlaybackError
from .instruments import DRUMS, instrument_name
from .midi import Score, _to_symusic, read_midi

if TYPE_CHECKING:
    import music21

MIDDLE_C = 60
#: A part gets a grand staff (treble + bass, split at middle C) when its notes span more than
#: this many semitones with at least `GRAND_STAFF_SHARE` of them on each side of middle C: a
#: piano's two hands, not a tenor or a horn (whose one staff takes a treble-8 or bass clef).
GRAND_STAFF_SPAN = 24
GRAND_STAFF_SHARE = 0.1
MUSESCORE_NAMES = ("mscore", "musescore", "mscore3", "musescore3", "mscore4", "musescore4", "MuseScore4",
                   "mscore4portable")


@dataclass
class Staff:
    """One staff to engrave: a name, its notes (indices into the score) and a clef rule."""

    name: str
    notes: np.ndarray
    clef: str = "best"  # "best" (music21 chooses), "treble" or "bass" (the halves of a grand staff)
    group: int = -1  # staves of one grand staff share a group number


@dataclass
class Notation:
    """Engraved sheet music: ``svg`` (verovio), ``musicxml``, ``staves`` per system, ``notes``
    (what was left out); drawn inline by Jupyter and VS Code."""

    svg: str
    musicxml: str
    parts: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def n_staves(self) -> int:
        return staves_per_system(self.svg)

    def _repr_html_(self) -> str:
        caption = "".join(f'<div style="font-size:smaller;opacity:0.75">{html.escape(n)}</div>' for n in self.notes)
        return f'<div style="max-width:100%;overflow-x:auto;background:white">{self.svg}</div>{caption}'

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.svg`` or ``.musicxml``/``.xml`` (see `write_score` for PDF/PNG)."""
        suffix = Path(path).suffix.lower()
        if suffix == ".svg":
            return atomic.write_text(path, self.svg)
        if suffix in (".musicxml", ".xml"):
            return atomic.write_text(path, self.musicxml)
        raise PlaybackError(f"{path}: Notation.save writes .svg or .musicxml; use write_score for .pdf/.png")

    def __repr__(self) -> str:
        extra = f"; {'; '.join(self.notes)}" if self.notes else ""
        return f"<Notation: {len(self.parts)} parts ({', '.join(self.parts)}), {len(self.svg) / 1e3:.0f} kB SVG{extra}>"


# ------------------------------------------------------------------ parts and staves
def _file_tracks(score: Score) -> tuple[np.ndarray, list[str]] | None:
    """Each note's track in the file ``score.path``, if the score holds exactly that file's notes."""
    if not score.path or not Path(score.path).is_file():
        return None
    try:
        import symusic

        f = symusic.Score.from_file(str(score.path))
    except Exception:
        return None
    cols, names = [], []
    for track in f.tracks:
        if track.note_num():
            a = track.notes.numpy()
            key = DRUMS if track.is_drum else track.program
            cols.append((a["time"], a["time"] + a["duration"], a["pitch"], a["velocity"],
                         np.full(len(a["time"]), key), np.full(len(a["time"]), len(names))))
            names.append(track.name.strip())
    if not cols or sum(len(c[0]) for c in cols) != len(score):
        return None
    file_notes = np.concatenate([np.stack([np.asarray(x, np.int64) for x in c]) for c in cols], axis=1)
    ours = np.stack([score.start, score.end, score.pitch, score.velocity, score.instrument]).astype(np.int64)
    fo, so = np.lexsort(file_notes[:5][::-1]), np.lexsort(ours[::-1])
    if not np.array_equal(file_notes[:5, fo], ours[:, so]):
        return None
    track = np.empty(len(score), np.int64)
    track[so] = file_notes[5, fo]
    return track, names


def parts(score: Score) -> list[tuple[str, int, np.ndarray]]:
    """The parts of a score as (name, instrument key, note indices): the file's tracks when the
    score still holds exactly its file's notes, else one part per instrument key."""
    inst = score.instrument
    found = _file_tracks(score)
    out = []
    if found is not None:
        track, names = found
        for t, name in enumerate(names):
            idx = np.flatnonzero(track == t)
            if len(idx):
                key = int(inst[idx[0]])
                out.append((name or instrument_name(key), key, idx))
        return out
    return [(instrument_name(k), int(k), np.flatnonzero(inst == k)) for k in np.unique(inst)]


def staves(score: Score) -> tuple[list[Staff], list[str]]:
    """The staves to engrave and notes on what is left out (drums)."""
    out, notes = [], []
    for group, (name, key, idx) in enumerate(parts(score)):
        if key == DRUMS:
            notes.append(f"{name}: {len(idx)} drum notes not shown (no percussion staff yet)")
            continue
        p = score.pitch[idx]
        upper, lower = idx[p >= MIDDLE_C], idx[p < MIDDLE_C]
        share = len(upper) / len(idx)
        if p.max() - p.min() > GRAND_STAFF_SPAN and GRAND_STAFF_SHARE <= share <= 1 - GRAND_STAFF_SHARE:
            out += [Staff(name, upper, "treble", group), Staff(name, lower, "bass", group)]
        else:
            out.append(Staff(name, idx))
    return out, notes


def _measure_end_tick(score: Score, measures: int) -> int:
    """The tick where measure ``measures`` ends, following the time signatures (4/4 if none)."""
    tpq = score.ticks_per_quarter
    changes = sorted(zip(score.ts_ticks.tolist(), score.ts_numerator.tolist(), score.ts_denominator.tolist(),
                         strict=True))
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 4, 4))
    tick, left = 0, measures
    for i, (t0, num, den) in enumerate(changes):
        bar = max(1, round(tpq * 4 * num / den))
        nxt = changes[i + 1][0] if i + 1 < len(changes) else None
        bars_here = left if nxt is None else min(left, -(-(nxt - t0) // bar))
        tick, left = t0 + bars_here * bar, left - bars_here
        if left == 0:
            break
    return int(tick)


# ------------------------------------------------------------------ music21 and MusicXML
def _spell(part: music21.stream.Part, key_sig: music21.key.KeySignature) -> None:
    """Spell black keys as the key signature has them (music21 spells MIDI with sharps)."""
    in_key = {p.name for p in key_sig.getScale("major").pitches}
    for n in part.recurse().notes:
        for p in n.pitches:
            if p.accidental is None or p.name in in_key:
                continue
            other = p.getEnharmonic()
            flat = other.accidental is not None and other.accidental.alter == -1
            if other.name in in_key or (key_sig.sharps < 0 and flat):  # else flat keys take flats
                p.step, p.accidental, p.octave = other.step, other.accidental, other.octave


def to_music21(score: Score | str | os.PathLike, measures: int | None = 8) -> music21.stream.Score:
    """A ``music21.stream.Score`` with one labelled staff per part (see the module doc)."""
    return _engrave(score, measures)[0]


def _engrave(score: Score | str | os.PathLike, measures: int | None) -> tuple[music21.stream.Score, list[str]]:
    """`to_music21`, and notes on what it left out (drums)."""
    from music21 import key, layout, metadata, stream
    from music21.stream.makeNotation import makeAccidentalsInMeasureStream

    s = score if isinstance(score, Score) else read_midi(score)
    specs, notes = staves(s)
    if not specs:
        raise PlaybackError("nothing to engrave: " + ("; ".join(notes) or "the score has no notes"))
    kept, parsed = _staff_parts(s, specs, _measure_end_tick(s, measures) if measures else None)
    out = stream.Score()
    out.metadata = metadata.Metadata(title=Path(s.path).stem if s.path else "")
    groups: dict[int, list] = {}
    for spec, part in zip(kept, parsed, strict=True):
        grand = spec.group >= 0 and sum(k.group == spec.group for k in kept) == 2  # both halves kept
        part = _dress_part(part, spec, grand)
        if grand:
            groups.setdefault(spec.group, []).append(part)
        out.insert(0, part)
    for members in groups.values():
        out.insert(0, layout.StaffGroup(members, name=members[0].partName, symbol="brace", barTogether=True))
    key_sig = key.KeySignature(out.analyze("key").sharps)
    for part in out.parts:
        first = part.getElementsByClass("Measure").first()
        if first is not None:
            first.keySignature = key.KeySignature(key_sig.sharps)
        _spell(part, key_sig)
        makeAccidentalsInMeasureStream(part, overrideStatus=True)  # against the new key signature
    return out, notes


def _staff_parts(s: Score, specs: list[Staff], end: int | None) -> tuple[list[Staff], list]:
    """The staves that have notes (before tick ``end``) and a music21 part of each, parsed from
    MIDI tracks of our own (tempi and time signatures as midi.py writes them)."""
    import symusic
    from music21 import midi as m21midi

    midi = _to_symusic(s)
    midi.tracks.clear()
    kept = []
    for spec in specs:
        i = spec.notes
        start, stop = s.start[i], s.end[i]
        if end is not None:
            keep = start < end
            i, start, stop = i[keep], start[keep], np.minimum(stop[keep], end)
        if not len(i):
            continue
        track = symusic.Track(spec.name, int(s.program[i[0]]), False)
        track.notes = symusic.Note.from_numpy(start.astype(np.int32), np.maximum(stop - start, 1).astype(np.int32),
                                              s.pitch[i].astype(np.int8),
                                              np.clip(s.velocity[i], 1, 127).astype(np.int8))
        midi.tracks.append(track)
        kept.append(spec)
    mf = m21midi.MidiFile()
    mf.readstr(midi.dumps_midi())
    parsed = list(m21midi.translate.midiFileToStream(mf).parts)
    if len(parsed) != len(kept):
        raise PlaybackError(f"music21 made {len(parsed)} parts of {len(kept)} staves")
    return kept, parsed


def _dress_part(part: music21.stream.Part, spec: Staff, grand: bool) -> music21.stream.Part:
    """A parsed part named and clefed as ``spec`` says, without tempo marks; half of a grand
    staff (``grand``) becomes a ``PartStaff``. Returns the part to insert."""
    from music21 import clef, stream

    for mark in list(part.recurse().getElementsByClass("MetronomeMark")):
        mark.activeSite.remove(mark)  # the tempo is in the audio; verovio draws it over the notes
    if grand:
        staff = stream.PartStaff()
        staff.mergeElements(part)
        part = staff
    short = spec.name if len(spec.name) <= 6 else spec.name[:5].rstrip() + "."
    part.partName, part.partAbbreviation = spec.name, short
    for inst in part.getElementsByClass("Instrument"):  # music21's guess from the program
        inst.partName, inst.partAbbreviation = spec.name, short
    first = part.getElementsByClass("Measure").first()
    if first is not None:
        want = {"treble": clef.TrebleClef, "bass": clef.BassClef}.get(spec.clef)
        first.clef = want() if want else clef.bestClef(part, allowTreble8vb=True, recurse=True)
    return part


def to_musicxml(score: Score | str | os.PathLike, measures: int | None = 8) -> str:
    """MusicXML text of `to_music21`."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(to_music21(score, measures)).parse().decode("utf-8")


# ------------------------------------------------------------------ verovio and SVG
def musicxml_to_svg(musicxml: str, width: int = 2100, scale: int = 40) -> str:
    """Engrave MusicXML with verovio as one SVG page (systems broken to ``width``)."""
    import verovio

    tk = verovio.toolkit()
    tk.setOptions({"pageWidth": width, "pageHeight": 60000, "adjustPageHeight": True, "scale": scale,
                   "breaks": "auto", "header": "none", "footer": "none", "svgViewBox": True,
                   "pageMarginLeft": 150})  # room for long part names, which verovio under-measures
    if not tk.loadData(musicxml):
        raise PlaybackError("verovio could not read the MusicXML")
    return tk.renderToSVG(1)


def staves_per_system(svg: str) -> int:
    """How many staves the first system of a verovio SVG has (staves of its first measure)."""
    import xml.etree.ElementTree as ET

    def cls(e: ET.Element) -> list[str]:
        return e.get("class", "").split()

    for e in ET.fromstring(svg).iter():
        if "measure" in cls(e):
            return sum("staff" in cls(c) for c in e)
    return 0


def _notation(score: Score | str | os.PathLike, measures: int | None, width: int, scale: int) -> Notation:
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    m21, notes = _engrave(score, measures)
    xml = GeneralObjectExporter(m21).parse().decode("utf-8")
    names = list(dict.fromkeys(p.partName for p in m21.parts))
    return Notation(musicxml_to_svg(xml, width, scale), xml, names, notes)


def to_svg(score: Score | str | os.PathLike, measures: int | None = 8, width: int = 2100, scale: int = 40) -> str:
    """SVG sheet music of a `Score` or MIDI path (the first ``measures``; None for all)."""
    return _notation(score, measures, width, scale).svg


def show_score(score: Score | str | os.PathLike, measures: int | None = 8, width: int = 2100,
               scale: int = 40) -> Notation:
    """Sheet music of a `Score` or MIDI path, drawn inline in Jupyter/VS Code (no MuseScore).

    ``measures`` keeps the opening (None for all); ``width`` is verovio's page width (systems
    break to it) and ``scale`` its size in percent.
    """
    return _notation(score, measures, width, scale)


# ------------------------------------------------------------------ files (and MuseScore)
def find_musescore() -> str | None:
    """Path of a MuseScore executable, or None (needed only for PDF/PNG export)."""
    for name in MUSESCORE_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def write_score(score: Score | str | os.PathLike, path: str | os.PathLike, measures: int | None = None) -> Path:
    """Write sheet music: ``.svg`` (verovio) or ``.musicxml``; ``.pdf``/``.png`` need MuseScore."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".svg", ".musicxml", ".xml"):
        return show_score(score, measures).save(p)
    if suffix not in (".pdf", ".png"):
        raise PlaybackError(f"{p}: write .svg, .musicxml, .pdf or .png")
    exe = find_musescore()
    if exe is None:
        raise PlaybackError(f"{p}: {suffix[1:].upper()} export needs MuseScore (Debian/Ubuntu: `apt-get install "
                            "musescore3`; others: https://musescore.org); .svg and .musicxml need nothing more")
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        xml = Path(d) / "score.musicxml"
        xml.write_text(to_musicxml(score, measures))
        out = Path(d) / f"score{suffix}"
        r = subprocess.run([exe, "-o", str(out), str(xml)], capture_output=True, text=True, timeout=300)
        made = sorted(Path(d).glob(f"score*{suffix}"))  # MuseScore numbers PNG pages: score-1.png
        if r.returncode != 0 or not made:
            raise PlaybackError(f"{p}: MuseScore failed: {(r.stderr or r.stdout).strip()[-300:]}")
        return atomic.write_bytes(p, made[0].read_bytes())


__all__ = ["Notation", "find_musescore", "musicxml_to_svg", "parts", "show_score", "staves", "staves_per_system",
           "to_music21", "to_musicxml", "to_svg", "write_score"]
