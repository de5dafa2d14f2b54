"""The ``midigen`` command line. Thin: parse arguments, call the library, print.

The flags of ``train``, ``prepare``, ``generate``, ``evaluate``, ``check`` and ``encode`` are made
from the config dataclasses' fields (types, defaults, choices, help: `midigen.flags`), so every
field reaches the command line and ``--config FILE.json`` can set any of them. Hand-written over
argparse rather than jsonargparse or tyro (both tried): they name flags ``--train.max_steps`` /
print errors as multi-line boxes, cannot keep the older names (``--max-tokens``, ``--knn-layers
0,1``, ``-q``) or the ``{"train": ..., "model": ...}`` files without a wrapper as long as this
generator, and add 0.1 s to every start (measured: ``import jsonargparse`` 0.12 s, ``import tyro``
0.10 s, against 0.04 s for argparse).

User errors (a bad flag value, a missing file, a corpus that is not one, ...) end in one line,
``midigen CMD: error: ...``, and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from . import flags
from .cli_args import (
    check_args,
    demo_args,
    encode_args,
    evaluate_args,
    export_corpus_args,
    export_model_args,
    generate_args,
    prepare_args,
    render_args,
    train_args,
)

# -------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace, cfg: dict) -> int:
    from .check import check, format_report, format_summary, write_json

    report = check(args.paths, cfg["encoding"], progress=not args.quiet)
    print(format_summary(report) if args.quiet else format_report(report, verbose=args.verbose))
    if args.json:
        write_json(report, args.json)
        print(f"report written to {args.json}")
    if report["files"] == 0:
        raise FileNotFoundError("no MIDI files found under: " + " ".join(args.paths))
    return 0


def cmd_encode(args: argparse.Namespace, cfg: dict) -> int:
    from .encoding import Tokenizer

    tokenizer = Tokenizer(cfg["encoding"])
    toks = tokenizer.encode(args.file)
    words = tokenizer.to_tokens(toks.ids)
    if args.limit:
        words = words[: args.limit] + (["..."] if len(toks) > args.limit else [])
    print(" ".join(words))
    print(f"\n{len(toks)} tokens; " + ", ".join(f"{k}={v}" for k, v in toks.stats.items()), file=sys.stderr)
    return 0


def cmd_prepare(args: argparse.Namespace, cfg: dict) -> int:
    from .data.prepare import prepare

    r = prepare(args.sources, args.out, cfg["encoding"], cfg["prepare"])
    m = r.manifest
    print(f"prepared {args.out}: {m['files_ok']} files ok, {m['files_failed']} failed, "
          f"{m['duplicates']} duplicates skipped ({r.encoded} encoded now, {r.cached} from cache, "
          f"{r.seconds:.1f} s, {r.notes_per_second:,.0f} notes/s)")
    for split, s in m["splits"].items():
        bpe = f" ({m['bpe']['splits'][split]['tokens']:,} BPE tokens)" if "bpe" in m else ""
        print(f"  {split:<5} {s['files']:>7} pieces {s['tokens']:>11,} tokens {s['notes']:>10,} notes{bpe}")
    if m["failures"]:
        print("failures:")
        for f in m["failures"][:20]:
            print(f"  {f['path']}: {f['error']}")
        if len(m["failures"]) > 20:
            print(f"  ... and {len(m['failures']) - 20} more (see {args.out}/manifest.json)")
    return 0


def check_device(name: str) -> None:
    """A --device the user asked for that this machine does not have is a user error."""
    if name == "auto" or not name.startswith(("cuda", "mps")):
        return
    import torch

    if name.startswith("mps"):
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available on this machine (use --device cpu)")
        return
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    index = name.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise ValueError(f"--device {name}: no such GPU ({torch.cuda.device_count()} visible)")


def cmd_train(args: argparse.Namespace, cfg: dict) -> int:
    from .train import Trainer

    train_cfg, model_kw = cfg["train"], cfg["model"]
    check_device(train_cfg.device)
    callbacks = []
    if cfg["monitor"].monitor_samples > 0:
        from .monitor import MusicMonitor

        callbacks.append(MusicMonitor(cfg["monitor"]))
    try:
        if args.resume is not None:  # the run folder's settings; those given again must agree
            given = flags.values(args, args.sections)
            run = train_cfg.out if args.resume is True else args.resume
            if args.resume is not True and given["train"].get("out", run) != run:
                raise ValueError(f"--resume {run} and --out {given['train']['out']}: give the run folder once")
            changes = {k: v for k, v in given["train"].items() if k != "out"}
            trainer = Trainer.from_run(run, given["model"], callbacks, **changes)
        else:
            trainer = Trainer(train_cfg, model_kw, overwrite=args.overwrite, callbacks=callbacks)
    except ValueError as exc:  # the model config's own checks: in terms of its flags
        if type(exc) is not ValueError:
            raise
        raise ValueError(flags.in_flag_terms(str(exc), args.sections[1])) from None
    if trainer.is_main:
        n = trainer.raw_model.num_params()
        print(f"{trainer.cfg.model}: {n / 1e6:.2f}M parameters, vocabulary {len(trainer.tokenizer)}, "
              f"{trainer.train_data.n_tokens:,} training tokens, device {trainer.device}"
              + (f", {trainer.world} processes" if trainer.world > 1 else "")
              + (f", resuming {trainer.out} at step {trainer.step}" if trainer.resumed else ""), flush=True)
        if trainer.cfg.init_from and not trainer.resumed:
            fresh = trainer.fresh_parameters
            print(f"weights from {trainer.cfg.init_from}" + (f"; new: {', '.join(fresh)}" if fresh else ""))
        if trainer.resumed and trainer.resume_changes:
            print("changed on resume: "
                  + ", ".join(f"{flags.flag(k)} {a} -> {b}" for k, (a, b) in trainer.resume_changes.items()))
    m = trainer.train()
    if trainer.is_main and m:
        print(f"step {trainer.step}: valid loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}, "
              f"{m['bits_per_token']:.3f} bits/token; checkpoints in {trainer.out}/latest and {trainer.out}/best")
    return 0


def cmd_generate(args: argparse.Namespace, cfg: dict) -> int:
    from pathlib import Path

    from .checkpoint import load_model
    from .generate import generate, prompt_from_midi
    from .midi import write_midi

    check_device(args.device)
    model, tokenizer, meta = load_model(args.checkpoint, device=args.device)
    if args.int8:
        from .generate import quantize_for_cpu

        model = quantize_for_cpu(model)
    prompt = prompt_from_midi(args.prompt, tokenizer, beats=args.prompt_beats) if args.prompt else None
    outs = generate(model, tokenizer, prompt, num_samples=args.num_samples, config=cfg["sampling"])
    out = Path(args.out)
    for i, toks in enumerate(outs):
        path = out if args.num_samples == 1 else out.with_name(f"{out.stem}_{i}{out.suffix}")
        score = tokenizer.decode(toks.ids)
        write_midi(score, path)
        n_prompt = 0 if prompt is None else len(prompt)
        print(f"{path}: {len(toks) - n_prompt} new tokens, {score.n_notes} notes, "
              f"{score.end_beats.max(initial=0):.1f} beats")
    return 0


def cmd_evaluate(args: argparse.Namespace, cfg: dict) -> int:
    from .evaluate import evaluate, format_table, write_json

    check_device(cfg["evaluate"].device)
    result = evaluate(args.checkpoint, args.data, config=cfg["evaluate"])
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"written to {args.json}")
    return 0


def cmd_render(args: argparse.Namespace, _cfg: dict) -> int:
    from .playback import DEFAULT_SAMPLE_RATE, render, write_wav

    rate = args.sample_rate or DEFAULT_SAMPLE_RATE
    audio = render(args.file, rate, args.soundfont)
    write_wav(audio, args.out, rate)
    print(f"{args.out}: {len(audio) / rate:.1f} s")
    return 0


def cmd_demo(args: argparse.Namespace, _cfg: dict) -> int:
    from .demo import run_demo

    run_demo(args.out, checkpoint=args.checkpoint, samples=args.samples)
    return 0


def cmd_export_model(args: argparse.Namespace, _cfg: dict) -> int:
    from .checkpoint import export_model, resolve

    out = export_model(args.checkpoint, args.out, args.dtype)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"{resolve(args.checkpoint)} -> {out} (weights in {args.dtype}, {size:.1f} MB)")
    return 0


def cmd_export_corpus(args: argparse.Namespace, _cfg: dict) -> int:
    from .datasets import export_music21_corpus

    if args.set == "long":
        return _export_long(args)
    if args.include:
        raise ValueError("--include works with --set long")
    composer = None if args.composer == "all" else args.composer or "bach"
    r = export_music21_corpus(args.out, composer, workers=args.workers, progress=True, limit=args.limit)
    print(f"{r['written']} written, {r['skipped']} skipped (exist or not scores), {len(r['failed'])} failed")
    for path, err in r["failed"]:
        print(f"  {path}: {err}")
    return 0


def _export_long(args: argparse.Namespace) -> int:
    from .longcorpus import export_long_corpus, length_table

    composers = None if args.composer in (None, "all") else args.composer.split(",")
    r = export_long_corpus(args.out, args.min_notes, composers, args.include or (), args.min_beats,
                           workers=args.workers, timeout=args.timeout, limit=args.limit, retry_failed=args.retry_failed)
    print(f"{r['written']} written, {r['cached']} cached, {len(r['failed'])} failed, {r['short']} files shorter than "
          f"{args.min_beats:g} beats; repeats expanded in {r['expanded']}, "
          f"left unexpanded in {r['unexpanded']} (bad marks)")
    for path, err in r["failed"]:
        print(f"  {path}: {err}")
    print(length_table(r["lengths"]))
    print(f"journal and lengths: {r['journal']}")
    return 0


COMMANDS = {  # name: (what it does, its flags, what runs it)
    "check": ("round-trip every MIDI file (encode -> decode): note F1, tempo and dynamics changed, failures",
              check_args, cmd_check),
    "encode": ("print the tokens of one MIDI file", encode_args, cmd_encode),
    "prepare": ("encode folders of MIDI files into a prepared corpus (memmap token files)", prepare_args, cmd_prepare),
    "train": ("train a model on a prepared corpus", train_args, cmd_train),
    "generate": ("sample music from a checkpoint", generate_args, cmd_generate),
    "evaluate": ("likelihood on a split and music statistics of generated samples", evaluate_args, cmd_evaluate),
    "render": ("render a MIDI file to WAV with FluidSynth", render_args, cmd_render),
    "demo": ("prepare the bundled chorales, continue a held-out one with the bundled model, render, evaluate",
             demo_args, cmd_demo),
    "export-corpus": ("export music21's bundled corpus to MIDI files", export_corpus_args, cmd_export_corpus),
    "export-model": ("an inference copy of a checkpoint, its weights in 16 bits (no optimizer state)",
                     export_model_args, cmd_export_model),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, as every other error (not the whole usage)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s flags are built (they import its configs: torch for some)."""
    parser = _Parser(
        prog="midigen", description="GPT for music: MIDI <-> tokens, prepared corpora, training, generation, playback.",
        epilog="`midigen COMMAND --help` lists a command's flags. The flags of prepare, train, generate, evaluate, "
               "check and encode are the fields of their config dataclasses; --config FILE.json sets any of them.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == command:
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="show the traceback of an error")
            sections = add_args(p)
            if sections:
                p.add_argument("--config", metavar="FILE.json", help=flags.config_help(sections))
            p.set_defaults(func=run, sections=sections)
    return parser


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def parse(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    """Parsed arguments and the configs they make: ``{section: config}`` (train's "model": a dict).

    Defaults < the --config file < flags given. Raises ValueError / FileNotFoundError on bad input.
    """
    args = build_parser(_command_of(argv)).parse_args(argv)
    values = flags.values(args, args.sections)
    configs = {}
    for s in args.sections:
        try:
            configs[s.key] = s.make(values[s.key], args)
        except ValueError as exc:
            raise ValueError(flags.in_flag_terms(str(exc), s)) from None
    return args, configs


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split("\n")) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    from .errors import CheckpointError, PlaybackError, TrainingError

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    command = _command_of(argv)
    try:
        args, configs = parse(argv)
        return args.func(args, configs)
    except KeyboardInterrupt as exc:  # (training saves a checkpoint first: TrainingInterrupted says where)
        print(str(exc) or "interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    # MidiError, VocabError, DecodeError and the configs' errors are ValueErrors
    except (ValueError, OSError, CheckpointError, TrainingError, PlaybackError) as exc:
        if debug:
            raise
        print(f"midigen {command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
