"""BPE over actions: midigen's action-aware BPE against MidiTok's REMI + BPE, side by side.

One run, the same files for both tools:

1. **Training** on the Bach chorales (``midigen/assets/bach``), split deterministically by the sorted file
   list: files whose index ``% 10 != 0`` train, the others (every tenth, 41 of 410) are held out.
   midigen: ``tokenizer.encode(path)`` for every training file (the *base tokenisation*), then
   ``tokenizer.train_bpe(tokens, size)`` at each ``--sizes`` (default 500 1000 2000 4000).
   MidiTok: ``REMI(TokenizerConfig()).train(vocab_size=1000, model="BPE", files_paths=...)``,
   whose time includes reading and tokenising the files, so midigen's comparable time is the sum
   of its base tokenisation and its BPE training. Each is timed ``--train-repeat`` times
   (round-robin, best kept; the tokenizer object is built outside the timing), in wall-clock
   seconds and in CPU seconds of the process (steadier on a busy machine). For reference, the
   part of MidiTok's ``train`` that reads and tokenises the files (its ``TokTrainingIterator``,
   which also splits the sequences per bar) is timed on its own too; its row's "BPE train" and
   "total" are the whole ``train`` call.
2. **Compression** in tokens per note on the training files, the held-out files and the shared
   corpus (``../shared/corpus``, which shows how the Bach-trained tokenizers transfer): base
   tokens/note, BPE tokens/note and the reduction factor (base / BPE).
3. **Losslessness** on every file of every set: midigen
   ``np.array_equal(bpe.to_base(bpe.apply_bpe(t).ids), t.ids)`` for every size; MidiTok: the BPE ids
   of ``tok.encode(path)`` put through ``tok.decode_token_ids`` must give back the base ids of
   ``tok.encode(path, encode_ids=False)``, track by track.
4. **Encode throughput** on the Bach files (all of them), notes/s, best of ``--repeat`` passes
   (round-robin): midigen ``encode``; midigen ``encode`` + ``bpe.encode`` (size ``--compare-size``);
   MidiTok REMI ``tok(symusic.Score(path))`` untrained, and trained (its call then applies BPE).
   Every tool reads the file from disk inside the timing; a 20-file warm-up pass comes first.

**Notes.** Every "per note" and "notes/s" figure divides by the notes symusic finds in the file
(``sum(len(t.notes) for t in score.tracks)``), the same count for both tools. midigen merges notes
that coincide (same pitch, onset and instrument; 5% of the Bach notes, where voices double each
other) and MidiTok's REMI keeps one sequence per track, so the two do not encode exactly the same
notes; midigen's tokens per *encoded* note (``Tokens.stats["encoded_notes"]``) are given in an extra
column. MidiTok's token count is the sum of its per-track sequences (REMI's default config gives
one sequence per track, and its BPE is split per bar, so merges can cross time steps within a bar;
midigen's merges never leave one time step).

Files that any tool cannot read (or that midigen rejects, e.g. no notes) are skipped for every tool
and listed with the reason.

Run from the repository root (1.5-2 minutes on a busy 2-core machine, most of it MidiTok; one
thread: the script sets ``OMP_NUM_THREADS=1``, ``RAYON_NUM_THREADS=1``,
``TOKENIZERS_PARALLELISM=false`` before importing anything, and torch, imported by MidiTok, to one
thread)::

    .venv/bin/python benchmarks/bpe.py
    .venv/bin/python benchmarks/bpe.py --markdown
"""

from __future__ import annotations

import os

for _var, _value in (("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"),
                     ("RAYON_NUM_THREADS", "1"), ("RAYON_RS_NUM_CPUS", "1"),
                     ("TOKENIZERS_PARALLELISM", "false"), ("OMP_WAIT_POLICY", "PASSIVE")):
    os.environ.setdefault(_var, _value)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import symusic  # noqa: E402

from _tables import print_table as table  # noqa: E402
from midigen.encoding import Tokenizer, Tokens, encode  # noqa: E402

MIDI_SUFFIXES = {".mid", ".midi"}


# ----------------------------------------------------------------------------- helpers
def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def describe(exc: Exception, path: Path) -> str:
    msg = " ".join(str(exc).replace(f"{path}: ", "").split()) or type(exc).__name__
    return f"{type(exc).__name__}: {msg[:100]}"


def seqs(out) -> list:
    """MidiTok returns one TokSequence or a list of them (one per track)."""
    return out if isinstance(out, list) else [out]


def n_tokens(out) -> int:
    return sum(len(s.ids) for s in seqs(out))


def measure(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall-clock seconds, CPU seconds of this process, and the result of ``fn()``."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, result


@contextlib.contextmanager
def quiet_stdout():
    """Send file descriptor 1 (where Rust code writes too) to /dev/null for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def remi():
    from miditok import REMI, TokenizerConfig

    return REMI(TokenizerConfig())


def TokTrainingIterator(tokenizer, paths):  # noqa: N802 (MidiTok's class, imported late)
    from miditok.tokenizer_training_iterator import TokTrainingIterator as Iterator

    return Iterator(tokenizer, paths)


# ----------------------------------------------------------------------------- corpora
@dataclass
class FileSet:
    label: str
    paths: list[Path]
    notes: dict[Path, int]  # symusic's note count
    encoded: dict[Path, int]  # midigen's encoded notes
    base: dict[Path, Tokens]  # midigen base tokens
    remi_base: dict[Path, int]  # MidiTok REMI base token count

    @property
    def n_notes(self) -> int:
        return sum(self.notes[p] for p in self.paths)

    @property
    def n_encoded(self) -> int:
        return sum(self.encoded[p] for p in self.paths)

    def subset(self, label: str, keep: Callable[[int], bool]) -> "FileSet":
        paths = [p for i, p in enumerate(self.paths) if keep(i)]
        return FileSet(label, paths, self.notes, self.encoded, self.base, self.remi_base)


@dataclass
class Corpus:
    folder: str
    n_found: int
    files: FileSet
    skipped: dict[str, str] = field(default_factory=dict)


def load_corpus(folder: Path, label: str, vocab: Tokenizer, plain_remi) -> Corpus:
    """Read every file with every tool (untimed; also the warm-up); skip what any tool fails on."""
    found = midi_files(folder)
    ok, skipped = [], {}
    notes, encoded, base, remi_base = {}, {}, {}, {}
    for path in found:
        reasons = []
        try:
            score = symusic.Score(str(path))
            notes[path] = sum(len(t.notes) for t in score.tracks)
        except Exception as exc:
            reasons.append(f"symusic: {describe(exc, path)}")
        try:
            t = encode(path, vocab)
            base[path], encoded[path] = t, int(t.stats["encoded_notes"])
        except Exception as exc:
            reasons.append(f"midigen: {describe(exc, path)}")
        try:
            remi_base[path] = n_tokens(plain_remi(symusic.Score(str(path))))
        except Exception as exc:
            reasons.append(f"MidiTok: {describe(exc, path)}")
        if reasons:
            skipped[str(path.relative_to(folder))] = "; ".join(reasons)
        else:
            ok.append(path)
    return Corpus(label, len(found), FileSet(label, ok, notes, encoded, base, remi_base), skipped)


# ----------------------------------------------------------------------------- training
@dataclass
class Trained:
    tool: str
    size: int  # requested vocabulary size
    actual: int  # vocabulary size reached
    tokenise_s: float | None  # base tokenisation (midigen only; MidiTok's is inside train_s)
    train_s: float
    model: object
    cpu_total: float = 0.0  # best CPU seconds, tokenising included
    tokenise_alone_s: float | None = None  # MidiTok: its base tokenisation timed on its own (reference)

    @property
    def total_s(self) -> float:
        return (self.tokenise_s or 0.0) + self.train_s


def train_all(train: FileSet, vocab: Tokenizer, sizes: list[int], remi_size: int, repeat: int) -> list[Trained]:
    """Train every tokenizer ``repeat`` times, round-robin; keep each one's best wall and CPU time."""
    wall: dict = {}
    cpu: dict = {}

    def timed(key, fn):
        seconds, cpu_s, result = measure(fn)
        wall[key] = min(wall.get(key, float("inf")), seconds)
        cpu[key] = min(cpu.get(key, float("inf")), cpu_s)
        return result

    models: dict = {}
    paths = list(train.paths)
    for _ in range(repeat):
        tokens = timed("tokenise", lambda: [encode(p, vocab) for p in paths])
        for size in sizes:
            models[size] = timed(size, lambda: vocab.train_bpe(tokens, size))
        tok = remi()
        with quiet_stdout():  # MidiTok forces the Hugging Face progress bar on (blank lines when piped)
            timed("remi", lambda: tok.train(vocab_size=remi_size, model="BPE", files_paths=paths))
        models["remi"] = tok
        # for reference only: the part of `train` that reads and tokenises the files, on its own
        timed("remi tokenise", lambda: list(TokTrainingIterator(remi(), paths)))
    out = [Trained("midigen", s, len(models[s]), wall["tokenise"], wall[s], models[s],
                   cpu_total=cpu["tokenise"] + cpu[s]) for s in sizes]
    out.append(Trained("MidiTok REMI", remi_size, len(models["remi"]), None, wall["remi"], models["remi"],
                       cpu_total=cpu["remi"], tokenise_alone_s=wall["remi tokenise"]))
    return out


# ----------------------------------------------------------------------------- compression
@dataclass
class Compression:
    tool: str
    size: int
    files: int
    notes: int
    base_tokens: int
    bpe_tokens: int
    encoded_notes: int | None  # midigen only
    lossless: int  # files whose round trip is exact

    @property
    def base_per_note(self) -> float:
        return self.base_tokens / self.notes

    @property
    def bpe_per_note(self) -> float:
        return self.bpe_tokens / self.notes

    @property
    def reduction(self) -> float:
        return self.base_tokens / self.bpe_tokens


def compress(files: FileSet, model: Trained, failures: list[str]) -> Compression:
    base_tokens = bpe_tokens = lossless = 0
    for path in files.paths:
        if model.tool == "midigen":
            bpe: Tokenizer = model.model
            t = files.base[path]
            ids = bpe.apply_bpe(t).ids
            base_tokens += len(t.ids)
            bpe_tokens += len(ids)
            exact = np.array_equal(bpe.to_base(ids), t.ids)
        else:
            tok = model.model
            plain = seqs(tok.encode(path, encode_ids=False))
            enc = seqs(tok.encode(path))
            base_tokens += sum(len(s.ids) for s in plain)
            bpe_tokens += sum(len(s.ids) for s in enc)
            tok.decode_token_ids(enc)
            exact = len(plain) == len(enc) and all(list(a.ids) == list(b.ids) for a, b in zip(plain, enc))
            if sum(len(s.ids) for s in plain) != files.remi_base[path]:
                failures.append(f"{files.label} {path.name}: MidiTok's base length changed after training")
        lossless += bool(exact)
        if not exact:
            failures.append(f"{files.label} {path.name}: {model.tool} {model.size} round trip differs")
    encoded = files.n_encoded if model.tool == "midigen" else None
    return Compression(model.tool, model.actual, len(files.paths), files.n_notes, base_tokens, bpe_tokens,
                       encoded, lossless)


# ----------------------------------------------------------------------------- throughput
@dataclass
class Speed:
    tool: str
    files: int
    notes: int
    seconds: float
    cpu_s: float

    @property
    def notes_per_s(self) -> float:
        return self.notes / self.seconds


def throughput(files: FileSet, vocab: Tokenizer, bpe: Tokenizer, trained_remi, repeat: int) -> list[Speed]:
    plain_remi = remi()
    tools: list[tuple[str, Callable[[str], object]]] = [
        ("midigen", lambda p: encode(p, vocab)),
        (f"midigen + BPE {len(bpe)}", lambda p: bpe.encode(p)),
        ("MidiTok REMI", lambda p: plain_remi(symusic.Score(p))),
        (f"MidiTok REMI + BPE {len(trained_remi)}", lambda p: trained_remi(symusic.Score(p))),
    ]
    paths = [str(p) for p in files.paths]
    for _, run in tools:  # warm-up
        for p in paths[:20]:
            run(p)
    best = {name: float("inf") for name, _ in tools}
    best_cpu = dict(best)
    for _ in range(repeat):
        for name, run in tools:
            seconds, cpu_s, _ = measure(lambda: [run(p) for p in paths])
            best[name] = min(best[name], seconds)
            best_cpu[name] = min(best_cpu[name], cpu_s)
    return [Speed(name, len(paths), files.n_notes, best[name], best_cpu[name]) for name, _ in tools]


# ----------------------------------------------------------------------------- output
def training_rows(trained: list[Trained]) -> list[list[str]]:
    rows = []
    for t in trained:
        rows.append([t.tool, str(t.size), str(t.actual),
                     f"{t.tokenise_s:.3f}" if t.tokenise_s is not None
                     else f"(in train: {t.tokenise_alone_s:.3f})",
                     f"{t.train_s:.3f}", f"{t.total_s:.3f}", f"{t.cpu_total:.3f}"])
    return rows


def compression_rows(results: list[Compression]) -> list[list[str]]:
    rows = []
    for c in results:
        per_enc = f"{c.bpe_tokens / c.encoded_notes:.3f}" if c.encoded_notes else "-"
        base_enc = f"{c.base_tokens / c.encoded_notes:.3f}" if c.encoded_notes else "-"
        rows.append([c.tool, str(c.size), str(c.files), str(c.notes), f"{c.base_per_note:.3f}",
                     f"{c.bpe_per_note:.3f}", f"{c.reduction:.2f}x", f"{base_enc} / {per_enc}",
                     f"{c.lossless}/{c.files}"])
    return rows


def speed_rows(speeds: list[Speed]) -> list[list[str]]:
    by = {s.tool: s for s in speeds}
    ref_plain = by["MidiTok REMI"]
    ref_bpe = next(s for s in speeds if s.tool.startswith("MidiTok REMI + BPE"))
    return [[s.tool, str(s.files), str(s.notes), f"{s.seconds:.4f}", f"{s.cpu_s:.4f}", f"{s.notes_per_s:,.0f}",
             f"{s.notes_per_s / ref_plain.notes_per_s:.2f}x", f"{s.notes_per_s / ref_bpe.notes_per_s:.2f}x"]
            for s in speeds]


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bach", default="midigen/assets/bach", help="training corpus (default midigen/assets/bach)")
    parser.add_argument("--transfer", default="../shared/corpus",
                        help="corpus the Bach-trained tokenizers are applied to (default ../shared/corpus)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000],
                        help="midigen BPE vocabulary sizes (default 500 1000 2000 4000)")
    parser.add_argument("--compare-size", type=int, default=1000,
                        help="MidiTok's vocabulary size, and midigen's in the throughput table (default 1000)")
    parser.add_argument("--train-repeat", type=int, default=3,
                        help="training runs per tokenizer, best kept (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput passes per tool, best kept (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # MidiTok warns about things irrelevant here
    try:
        import miditok  # noqa: F401
    except ImportError as exc:
        print(f"MidiTok is needed for this comparison: {exc}")
        return 1
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    from importlib.metadata import version

    import tokenizers

    if args.compare_size not in args.sizes:
        args.sizes = sorted(set(args.sizes) | {args.compare_size})
    t_start = time.perf_counter()
    vocab = Tokenizer()
    plain_remi = remi()
    print(f"Python {sys.version.split()[0]}, symusic {symusic.__version__}, MidiTok {version('miditok')}, "
          f"tokenizers {tokenizers.__version__}; one thread; base vocabularies: midigen {len(vocab)}, "
          f"MidiTok REMI {len(plain_remi)}")

    bach = load_corpus(Path(args.bach), args.bach, vocab, plain_remi)
    train = bach.files.subset(f"{args.bach} train (index % 10 != 0)", lambda i: i % 10 != 0)
    held = bach.files.subset(f"{args.bach} held out (index % 10 == 0)", lambda i: i % 10 == 0)
    corpora = [bach]
    sets = [train, held]
    transfer_path = Path(args.transfer)
    if transfer_path.is_dir() and midi_files(transfer_path):
        shared = load_corpus(transfer_path, args.transfer, vocab, plain_remi)
        corpora.append(shared)
        sets.append(replace(shared.files, label=f"{args.transfer} (transfer)"))
    else:
        print(f"[skip] {args.transfer}: no such folder or no MIDI files in it")
    for c in corpora:
        print(f"{c.folder}: {c.n_found} MIDI files found, {len(c.files.paths)} read by every tool, "
              f"{len(c.skipped)} skipped")
        for f, why in c.skipped.items():
            print(f"  skipped {f}: {why}")

    trained = train_all(train, vocab, args.sizes, args.compare_size, args.train_repeat)
    table(f"Training on {len(train.paths)} Bach files ({train.n_notes} notes), seconds, best of "
          f"{args.train_repeat}",
          ["tool", "vocab asked", "vocab", "base tokenise s", "BPE train s", "total s", "total CPU s"],
          training_rows(trained), args.markdown)

    failures: list[str] = []
    for files in sets:
        results = [compress(files, t, failures) for t in trained]
        table(f"{files.label}: {len(files.paths)} files, {files.n_notes} notes (symusic)",
              ["tool", "vocab", "files", "notes", "base tok/note", "BPE tok/note", "reduction",
               "per encoded note (base / BPE)", "lossless"],
              compression_rows(results), args.markdown)
    if failures:
        print("\nRound-trip failures:")
        for line in failures[:20]:
            print(f"  {line}")
        if len(failures) > 20:
            print(f"  ... and {len(failures) - 20} more")

    midigen_cmp = next(t for t in trained if t.tool == "midigen" and t.size == args.compare_size)
    remi_cmp = trained[-1]
    speeds = throughput(bach.files, vocab, midigen_cmp.model, remi_cmp.model, args.repeat)
    table(f"Encode throughput, {args.bach} (all {len(bach.files.paths)} files, read from disk), best of "
          f"{args.repeat}", ["tool", "files", "notes", "seconds", "CPU s", "notes/s", "vs MidiTok REMI",
                             "vs MidiTok REMI + BPE"], speed_rows(speeds), args.markdown)
    print(f"\n({time.perf_counter() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
