"""The ``midigen`` command line. Thin: parse arguments, call the library, print."""

from __future__ import annotations

import argparse
import sys


def _encoding_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoding")
    g.add_argument("--steps-per-beat", type=int, default=4, help="grid resolution (default 4)")
    g.add_argument("--max-duration", type=int, default=64, help="longest note in steps (default 64)")
    g.add_argument("--blog", action="store_true",
                   help="the blog's scheme exactly: no instrument or tempo tokens, drums dropped")


def _config(args):
    from .encoding import EncodingConfig

    kw = dict(steps_per_beat=args.steps_per_beat, max_duration=args.max_duration)
    kw["max_silence"] = max(256, args.max_duration)
    return EncodingConfig.blog(**kw) if args.blog else EncodingConfig(**kw)


def cmd_check(args) -> int:
    from .check import check, format_report, write_json

    report = check(args.paths, _config(args), progress=not args.quiet)
    if not args.quiet:
        print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"report written to {args.json}")
    if report["files"] == 0:
        print("no MIDI files found under: " + " ".join(args.paths), file=sys.stderr)
        return 2
    return 0


def cmd_encode(args) -> int:
    from .encoding import Vocab, encode
    from .errors import MidiError

    vocab = Vocab(_config(args))
    try:
        toks = encode(args.file, vocab)
    except MidiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    words = vocab.to_tokens(toks.ids)
    if args.limit:
        words = words[: args.limit] + (["..."] if len(toks) > args.limit else [])
    print(" ".join(words))
    print(f"\n{len(toks)} tokens; " + ", ".join(f"{k}={v}" for k, v in toks.stats.items()), file=sys.stderr)
    return 0


def cmd_prepare(args) -> int:
    from .data.prepare import prepare

    r = prepare(
        args.sources, args.out, _config(args), valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction, seed=args.seed, workers=args.workers, timeout=args.timeout,
        progress=not args.quiet,
    )
    m = r.manifest
    print(f"prepared {args.out}: {m['files_ok']} files ok, {m['files_failed']} failed, "
          f"{m['duplicates']} duplicates skipped ({r.encoded} encoded now, {r.cached} from cache, "
          f"{r.seconds:.1f} s, {r.notes_per_second:,.0f} notes/s)")
    for split, s in m["splits"].items():
        print(f"  {split:<5} {s['files']:>7} pieces {s['tokens']:>11,} tokens {s['notes']:>10,} notes")
    if m["failures"]:
        print("failures:")
        for f in m["failures"][:20]:
            print(f"  {f['path']}: {f['error']}")
        if len(m["failures"]) > 20:
            print(f"  ... and {len(m['failures']) - 20} more (see {args.out}/manifest.json)")
    return 0


def cmd_export_corpus(args) -> int:
    from .datasets import export_music21_corpus

    composer = None if args.composer == "all" else args.composer
    r = export_music21_corpus(args.out, composer, workers=args.workers, progress=True, limit=args.limit)
    print(f"{r['written']} written, {r['skipped']} skipped (exist or not scores), {len(r['failed'])} failed")
    for path, err in r["failed"]:
        print(f"  {path}: {err}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="midigen", description="GPT for music: MIDI <-> tokens, and more.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="round-trip every MIDI file (encode -> decode) and report note F1")
    p.add_argument("paths", nargs="+", help="MIDI files or folders (searched recursively)")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    _encoding_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("encode", help="print the tokens of one MIDI file")
    p.add_argument("file")
    p.add_argument("--limit", type=int, default=0, help="print at most this many tokens")
    _encoding_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("prepare", help="encode folders of MIDI files into a prepared corpus (memmap token files)")
    p.add_argument("sources", nargs="+", help="MIDI files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder of the prepared corpus")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count; 0 = in-process)")
    p.add_argument("--valid-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test split")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per file (default 60)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _encoding_args(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("export-corpus", help="export music21's bundled corpus to MIDI files")
    p.add_argument("--composer", default="bach", help="a composer of music21's corpus, or 'all' (default bach)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--limit", type=int, default=None, help="export only the first N works")
    p.set_defaults(func=cmd_export_corpus)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
