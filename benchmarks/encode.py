"""Encoding throughput: MIDI file -> tokens, midigen against MidiTok, music21 and bare symusic.

What it measures, per folder of MIDI files, in files/s and notes/s (one process, one thread):

* ``midigen``       ``Tokenizer().encode(read_midi(path))``: parse with symusic, quantise, tokenise.
* ``midigen blog``  the same with the blog's scheme, ``Tokenizer(EncodingConfig.blog())``.
* ``MidiTok REMI``  ``REMI(TokenizerConfig())(symusic.Score(path))``: the usual tokeniser, same parser.
* ``music21``       ``music21.converter.parse(path, forceSource=True)`` then (pitch, offset,
  duration) for every note of ``s.flatten().notes``, as the original notebooks did. It is ~1000x
  slower, so it runs on a fixed subset of each folder (``--music21-files`` files, evenly spaced
  over the sorted file list; ``--music21-repeat`` passes, default 1) and its row says so.
  ``forceSource=True`` keeps music21 from loading (and writing) its pickle cache, which would
  otherwise turn repeats 2+ into pickle loads.
* ``symusic parse`` ``symusic.Score(path)`` alone: parsing only, the ceiling for any
  symusic-based tokeniser. midigen's rows also give their notes/s as a fraction of this one.

Every tool is given the file *path* and reads the file from disk inside the timed loop. Notes are
counted the same way for every tool: the notes symusic finds in the file
(``sum(len(t.notes) for t in score.tracks)``), counted once before timing, so notes/s compare.

Files that any tool fails on (for instance a corrupt file, or a file with no notes, which
midigen rejects) are skipped for all tools, so every tool is timed on the same files; the skipped
files are listed with the reason. The first, untimed pass over the files both finds them and
warms every tool up. Then each tool is timed ``--repeat`` times (default 5), round-robin (tool A,
B, C, ... then again) so that noise on a shared machine hits all of them alike, and the best time
is kept. The ratio column is notes/s relative to MidiTok REMI.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/encode.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/encode.py --markdown --music21-files 20

It takes about 1.5 minutes with the defaults, most of it music21 on ``../shared/corpus``. The
script sets ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS) and, where unset, ``OMP_WAIT_POLICY=PASSIVE``
itself before importing numpy or torch; torch (imported by MidiTok) is also set to one thread.

The default folders are ``midigen/assets/bach`` (the bundled chorales) and ``../shared/corpus`` (real-world
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

from midigen import EncodingConfig, Tokenizer, read_midi  # noqa: E402

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
    repeat: int = 1  # timed passes for a subset tool (whole-folder tools use --repeat)


def midigen_tool(config: EncodingConfig | None = None, name: str = "midigen") -> Tool:
    tokenizer = Tokenizer(config)
    return Tool(name, lambda path: tokenizer.encode(read_midi(path)))


def miditok_tool() -> Tool | None:
    try:
        from miditok import REMI, TokenizerConfig
    except ImportError as exc:
        print(f"[skip] MidiTok REMI: miditok is not installed ({exc})")
        return None
    if "torch" in sys.modules:  # miditok imports torch where it is installed: keep it to 1 thread
        sys.modules["torch"].set_num_threads(1)
    tokenizer = REMI(TokenizerConfig())
    return Tool(REFERENCE, lambda path: tokenizer(symusic.Score(path)))


def music21_tool(n_files: int, repeat: int) -> Tool | None:
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

    return Tool("music21", parse, subset=n_files, repeat=repeat)


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


def failures(tool: Tool, paths: list[Path]) -> dict[Path, str]:
    """Run the tool once on every file (untimed; this is also the warm-up) and collect failures."""
    errors = {}
    for path in paths:
        try:
            tool.run(str(path))
        except Exception as exc:  # any failure: the file is skipped for every tool
            errors[path] = describe(exc, path)
    return errors


def describe(exc: Exception, path: Path) -> str:
    msg = " ".join(str(exc).replace(f"{path}: ", "").split()) or type(exc).__name__
    return f"{type(exc).__name__}: {msg[:100]}"


def time_pass(tool: Tool, paths: list[str]) -> float:
    """Seconds for one pass of the tool over the files, reading each from disk."""
    gc.collect()
    start = time.perf_counter()
    for path in paths:
        tool.run(path)
    return time.perf_counter() - start


def time_slow_pass(tool: Tool, paths: list[Path], errors: dict[Path, str]) -> float:
    """Like `time_pass`, for the slow tools' subsets: files are timed one by one, so a file that
    fails (recorded in ``errors``) costs no extra validation pass and is left out of the time."""
    gc.collect()
    total = 0.0
    for path in paths:
        if path in errors:
            continue
        start = time.perf_counter()
        try:
            tool.run(str(path))
        except Exception as exc:
            errors[path] = describe(exc, path)
            continue
        total += time.perf_counter() - start
    return total


# ----------------------------------------------------------------------------- one folder
@dataclass
class Row:
    tool: str
    files: int
    notes: int
    seconds: float
    subset: bool = False
    repeat: int = 1

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
    skipped: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # file -> reason -> tools
    subset_tools: set[str] = field(default_factory=set)  # a failure in these skips the file for them only


def bench_folder(folder: Path, tools: list[Tool], repeat: int, label: str) -> FolderResult:
    found = midi_files(folder)
    result = FolderResult(label, len(found), subset_tools={t.name for t in tools if t.subset is not None})
    fast = [t for t in tools if t.subset is None]
    slow = [t for t in tools if t.subset is not None]

    # Untimed pass of every whole-folder tool over every file: finds the files that one of them
    # cannot read (skipped for all), and warms the tools up.
    bad: dict[Path, list[tuple[str, str]]] = {}
    for tool in fast:
        for path, reason in failures(tool, found).items():
            bad.setdefault(path, []).append((tool.name, reason))
    common = [p for p in found if p not in bad]
    notes = {path: count_notes(path) for path in common}

    # Timed passes, round-robin over the tools; keep each tool's best.
    best = {tool.name: float("inf") for tool in fast}
    for _ in range(repeat):
        for tool in fast:
            best[tool.name] = min(best[tool.name], time_pass(tool, [str(p) for p in common]))
    for tool in fast:
        if common:
            n_notes = sum(notes[p] for p in common)
            result.rows.append(Row(tool.name, len(common), n_notes, best[tool.name], repeat=repeat))

    # The slow tools: a subset of the common files, warmed up on its smallest file.
    for tool in slow:
        subset = evenly_spaced(common, tool.subset)
        if not subset:
            continue
        errors: dict[Path, str] = {}
        failures(tool, [min(subset, key=notes.get)])  # warm-up; a failure shows up again below
        seconds = min(time_slow_pass(tool, subset, errors) for _ in range(tool.repeat))
        for path, reason in errors.items():
            bad.setdefault(path, []).append((tool.name, reason))
        ok = [p for p in subset if p not in errors]
        if ok:
            n_notes = sum(notes[p] for p in ok)
            partial = len(ok) < len(common)
            result.rows.append(Row(tool.name, len(ok), n_notes, seconds, partial, tool.repeat))

    order = [tool.name for tool in tools]
    result.rows.sort(key=lambda row: order.index(row.tool))
    for path, reasons in bad.items():
        by_reason = result.skipped.setdefault(str(path.relative_to(folder)), {})
        for tool_name, reason in reasons:
            by_reason.setdefault(reason, []).append(tool_name)
    return result


# ----------------------------------------------------------------------------- output
HEADER = ["tool", "files", "notes", "seconds", "files/s", "notes/s", "vs MidiTok REMI", "of bare symusic"]


def table_cells(result: FolderResult) -> list[list[str]]:
    by_name = {row.tool: row for row in result.rows}
    ref, ceiling = by_name.get(REFERENCE), by_name.get(CEILING)
    cells = []
    for row in result.rows:
        name = f"{row.tool} [subset]" if row.subset else row.tool
        ratio = f"{row.notes_per_s / ref.notes_per_s:.2f}x" if ref else "-"
        frac = ""
        if ceiling and row.tool.startswith("midigen"):
            frac = f"{row.notes_per_s / ceiling.notes_per_s:.1%}"
        files_per_s = f"{row.files_per_s:,.1f}" if row.files_per_s >= 10 else f"{row.files_per_s:.2f}"
        cells.append([
            name, str(row.files), str(row.notes), f"{row.seconds:.4f}",
            files_per_s, f"{row.notes_per_s:,.0f}", ratio, frac,
        ])
    return cells


def print_table(result: FolderResult, markdown: bool) -> None:
    cells = table_cells(result)
    full = [r for r in result.rows if not r.subset]
    timed = max((r.files for r in full), default=0)
    skipped_all = [f for f, reasons in result.skipped.items()
                   if any(set(tools) - result.subset_tools for tools in reasons.values())]
    title = (
        f"{result.folder}: {result.n_found} MIDI files found, {timed} timed with every tool, "
        f"{len(skipped_all)} skipped; best of {full[0].repeat if full else 0} passes"
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

    notes = []
    for row in result.rows:
        if row.subset:
            notes.append(
                f"* {row.tool} is timed on a fixed subset of {row.files} of the {timed} files (evenly "
                f"spaced over the sorted list), best of {row.repeat} pass(es); its notes/s and ratio "
                f"compare rates, not the same files."
            )
    for file, reasons in result.skipped.items():
        only_subset = all(set(tools) <= result.subset_tools for tools in reasons.values())
        scope = "left out of the subset" if only_subset else "skipped for every tool"
        why = "; ".join(f"{', '.join(tools)}: {reason}" for reason, tools in reasons.items())
        notes.append(f"* `{file}` {scope}. {why}")
    if notes:
        print()
        for line in notes:
            print(line if markdown else "  " + line[2:].replace("`", ""))


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--folders", nargs="+", default=["midigen/assets/bach", "../shared/corpus"],
        help="folders of MIDI files, searched recursively (default: midigen/assets/bach ../shared/corpus)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per tool, best kept (default 5)")
    parser.add_argument(
        "--music21-files", type=int, default=10,
        help="how many files of each folder music21 is timed on (default 10; 0 leaves music21 out)",
    )
    parser.add_argument(
        "--music21-repeat", type=int, default=1,
        help="timed passes for music21 (default 1: it is ~1000x slower, so noise does not matter)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # MidiTok and music21 warn about things irrelevant here

    tools = [midigen_tool(), midigen_tool(EncodingConfig.blog(), "midigen blog")]
    tools += [t for t in [miditok_tool()] if t is not None]
    if args.music21_files > 0:
        tools += [t for t in [music21_tool(args.music21_files, args.music21_repeat)] if t is not None]
    tools.append(symusic_tool())

    print(
        f"Python {sys.version.split()[0]}, symusic {symusic.__version__}, "
        f"repeat {args.repeat} (best kept), one thread (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']})"
    )
    for folder in args.folders:
        path = Path(folder)
        if not path.is_dir():
            hint = " (it exists in the project's workspace, not in a checkout)" if "shared" in folder else ""
            print(f"\n[skip] {folder}: no such folder{hint}")
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
