"""Encoding throughput: MIDI file -> tokens, midigen against MidiTok, music21 and bare symusic.

What it measures, per folder of MIDI files, in files/s and notes/s (one process, one thread):

* ``midigen``       ``encode(read_midi(path), Vocab())``: parse with symusic, quantise, tokenise.
* ``midigen blog``  the same with the blog's scheme, ``Vocab(EncodingConfig.blog())``.
* ``MidiTok REMI``  ``REMI(TokenizerConfig())(symusic.Score(path))``: the usual tokeniser, same parser.
* ``music21``       ``music21.converter.parse(path, forceSource=True)`` then (pitch, offset,
  duration) for every note of ``s.flatten().notes``, as the original notebooks did. It is ~1000x
  slower, so it runs on a fixed subset of each folder (``--music21-files`` files, evenly spaced
  over the sorted file list) and its row says so. ``forceSource=True`` keeps music21 from loading
  (and writing) its pickle cache, which would otherwise turn repeats 2+ into pickle loads.
* ``symusic``       ``symusic.Score(path)`` alone: parsing only, the ceiling for any symusic-based
  tokeniser.

Every tool is given the file *path* and reads the file from disk inside the timed loop. Notes are
counted the same way for every tool: the notes symusic finds in the file
(``sum(len(t.notes) for t in score.tracks)``), counted once before timing, so notes/s compare.

Files that any tool fails on (for instance a corrupt file, or a file with no notes, which
midigen rejects) are skipped for all tools, so every tool is timed on the same files; the skipped
files are listed with the reason. The first, untimed pass over the files both finds them and
warms every tool up. Then each tool is timed ``--repeat`` times, round-robin (tool A, B, C, ...
then again) so that noise on a shared machine hits all of them alike, and the best time is kept.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/encode.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/encode.py --markdown --repeat 5

The default folders are ``data/bach`` (in the repository) and ``../shared/corpus`` (real-world
files kept outside the repository; skipped with a message where absent). MidiTok and music21 are
optional: a tool that is not installed is left out with a message.
"""

from __future__ import annotations

import os

# One thread everywhere (numpy's BLAS, torch's OpenMP pool), set before anything imports them.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import symusic  # noqa: E402

from midigen import EncodingConfig, Vocab, encode, read_midi  # noqa: E402

MIDI_SUFFIXES = {".mid", ".midi"}
REFERENCE = "MidiTok REMI"  # the ratio column is relative to this tool
CEILING = "symusic parse"  # the "fraction of bare symusic speed" column is relative to this one


# ----------------------------------------------------------------------------- the tools
@dataclass
class Tool:
    """One way of turning a MIDI file into tokens (or notes): ``run(path)`` does one file."""

    name: str
    run: Callable[[str], object]
    subset: int | None = None  # time on at most this many files (music21); None: all files


def midigen_tool(config: EncodingConfig | None = None, name: str = "midigen") -> Tool:
    vocab = Vocab(config) if config is not None else Vocab()
    return Tool(name, lambda path: encode(read_midi(path), vocab))


def miditok_tool() -> Tool | None:
    try:
        import torch
        from miditok import REMI, TokenizerConfig
    except ImportError as exc:
        print(f"[skip] MidiTok REMI: miditok is not installed ({exc})")
        return None
    torch.set_num_threads(1)
    tokenizer = REMI(TokenizerConfig())
    return Tool(REFERENCE, lambda path: tokenizer(symusic.Score(path)))


def music21_tool(n_files: int) -> Tool | None:
    try:
        import music21
    except ImportError as exc:
        print(f"[skip] music21: music21 is not installed ({exc})")
        return None

    def parse(path: str):
        s = music21.converter.parse(path, forceSource=True)
        return [
            (p.midi, n.offset, n.duration.quarterLength)
            for n in s.flatten().notes
            for p in n.pitches  # a Chord has several pitches, a Note one
        ]

    return Tool("music21", parse, subset=n_files)


def symusic_tool() -> Tool:
    return Tool(CEILING, lambda path: symusic.Score(path))


# ----------------------------------------------------------------------------- files
def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def count_notes(path: Path) -> int:
    """The notes symusic finds in the file: the one note count every tool is measured against."""
    score = symusic.Score(str(path))
    return sum(len(track.notes) for track in score.tracks)


def evenly_spaced(items: list, n: int) -> list:
    """``n`` items spread over the list, first one included (deterministic)."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def first_error(tool: Tool, paths: list[Path]) -> dict[Path, str]:
    """Run the tool once on every file (untimed; this is also the warm-up) and collect failures."""
    errors = {}
    for path in paths:
        try:
            tool.run(str(path))
        except Exception as exc:  # any failure: the file is skipped for every tool
            msg = " ".join(str(exc).split()) or type(exc).__name__
            errors[path] = f"{type(exc).__name__}: {msg[:110]}"
    return errors


def time_pass(tool: Tool, paths: list[str]) -> float:
    gc.collect()
    start = time.perf_counter()
    for path in paths:
        tool.run(path)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- one folder
@dataclass
class Row:
    tool: str
    files: int
    notes: int
    seconds: float
    subset: bool = False

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def notes_per_s(self) -> float:
        return self.notes / self.seconds


@dataclass
class FolderResult:
    folder: str
    n_found: int
    rows: list[Row] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (file, tool, reason)


def bench_folder(folder: Path, tools: list[Tool], repeat: int, label: str) -> FolderResult:
    found = midi_files(folder)
    result = FolderResult(label, len(found))

    # Note counts (symusic) and the untimed validation / warm-up pass of the whole-folder tools.
    bad: dict[Path, list[tuple[str, str]]] = {}
    notes: dict[Path, int] = {}
    for path in found:
        try:
            notes[path] = count_notes(path)
        except Exception as exc:
            bad.setdefault(path, []).append(("note count (symusic)", f"{type(exc).__name__}: {exc}"))
    for tool in tools:
        candidates = found if tool.subset is None else []
        for path, reason in first_error(tool, candidates).items():
            bad.setdefault(path, []).append((tool.name, reason))
    common = [p for p in found if p not in bad]

    # The slow tools' subsets come from the common files; their own failures are skipped too.
    chosen: dict[str, list[Path]] = {}
    for tool in tools:
        if tool.subset is None:
            chosen[tool.name] = common
            continue
        subset = evenly_spaced(common, tool.subset)
        errors = first_error(tool, subset)  # warm-up and validation on the subset only
        for path, reason in errors.items():
            bad.setdefault(path, []).append((tool.name, reason))
        chosen[tool.name] = [p for p in subset if p not in errors]

    for path, reasons in bad.items():
        for tool_name, reason in reasons:
            result.skipped.append((str(path.relative_to(folder)), tool_name, reason))

    # Timed passes, round-robin over the tools; keep each tool's best.
    best = {tool.name: float("inf") for tool in tools}
    for _ in range(repeat):
        for tool in tools:
            paths = [str(p) for p in chosen[tool.name]]
            if paths:
                best[tool.name] = min(best[tool.name], time_pass(tool, paths))
    for tool in tools:
        files = chosen[tool.name]
        if files:
            subset = tool.subset is not None and len(files) < len(common)
            result.rows.append(Row(tool.name, len(files), sum(notes[p] for p in files), best[tool.name], subset))
    return result


# ----------------------------------------------------------------------------- output
HEADER = ["tool", "files", "notes", "seconds", "files/s", "notes/s", "vs MidiTok REMI", "of bare symusic"]


def table_cells(result: FolderResult) -> list[list[str]]:
    by_name = {row.tool: row for row in result.rows}
    ref, ceiling = by_name.get(REFERENCE), by_name.get(CEILING)
    cells = []
    for row in result.rows:
        name = f"{row.tool} (subset: {row.files} files)" if row.subset else row.tool
        ratio = f"{row.notes_per_s / ref.notes_per_s:.2f}x" if ref else "-"
        frac = (
            f"{row.notes_per_s / ceiling.notes_per_s:.1%}"
            if ceiling and row.tool.startswith("midigen")
            else ""
        )
        cells.append([
            name, str(row.files), str(row.notes), f"{row.seconds:.4f}",
            f"{row.files_per_s:,.1f}", f"{row.notes_per_s:,.0f}", ratio, frac,
        ])
    return cells


def print_table(result: FolderResult, markdown: bool) -> None:
    cells = table_cells(result)
    n_common = max((r.files for r in result.rows if not r.subset), default=0)
    title = (
        f"{result.folder}: {result.n_found} MIDI files found, {n_common} timed, "
        f"{len({s[0] for s in result.skipped})} skipped"
    )
    if markdown:
        print(f"\n**{title}**\n")
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "|".join([" --- "] + [" ---: "] * (len(HEADER) - 1)) + "|")
        for row in cells:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(HEADER)]
        fmt = lambda r: "  ".join(  # noqa: E731
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
        )
        print(f"\n{title}")
        print(fmt(HEADER))
        print("  ".join("-" * w for w in widths))
        for row in cells:
            print(fmt(row))
    if result.skipped:
        print("\nSkipped (for every tool):" if not markdown else "\nSkipped (for every tool):\n")
        for file, tool, reason in result.skipped:
            print(f"- `{file}` ({tool}): {reason}" if markdown else f"  {file} ({tool}): {reason}")
    if any(r.subset for r in result.rows):
        note = (
            "music21 is timed on a fixed subset (evenly spaced over the sorted files); its notes/s "
            "and ratio compare rates, not the same files."
        )
        print(f"\n{note}" if markdown else f"  note: {note}")


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--folders", nargs="+", default=["data/bach", "../shared/corpus"],
        help="folders of MIDI files, searched recursively (default: data/bach ../shared/corpus)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per tool; the best is kept")
    parser.add_argument(
        "--music21-files", type=int, default=10,
        help="how many files of each folder music21 is timed on (default 10; 0 leaves music21 out)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # MidiTok and music21 warn about things irrelevant here

    tools = [midigen_tool(), midigen_tool(EncodingConfig.blog(), "midigen blog")]
    tools += [t for t in [miditok_tool()] if t is not None]
    if args.music21_files > 0:
        tools += [t for t in [music21_tool(args.music21_files)] if t is not None]
    tools.append(symusic_tool())

    print(
        f"Python {sys.version.split()[0]}, symusic {symusic.__version__}, "
        f"repeat {args.repeat} (best kept), one thread (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']})"
    )
    for folder in args.folders:
        path = Path(folder)
        if not path.is_dir():
            print(f"\n[skip] {folder}: no such folder (../shared/corpus exists only in the project's workspace)")
            continue
        if not midi_files(path):
            print(f"\n[skip] {folder}: no MIDI files in it")
            continue
        t0 = time.perf_counter()
        result = bench_folder(path, tools, args.repeat, folder)
        print_table(result, args.markdown)
        print(f"\n({folder}: {time.perf_counter() - t0:.0f} s in all, validation and warm-up included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
