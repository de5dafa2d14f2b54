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
    from .encoding import Tokenizer
    from .errors import MidiError

    tokenizer = Tokenizer(_config(args))
    try:
        toks = tokenizer.encode(args.file)
    except MidiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    words = tokenizer.to_tokens(toks.ids)
    if args.limit:
        words = words[: args.limit] + (["..."] if len(toks) > args.limit else [])
    print(" ".join(words))
    print(f"\n{len(toks)} tokens; " + ", ".join(f"{k}={v}" for k, v in toks.stats.items()), file=sys.stderr)
    return 0


def cmd_prepare(args) -> int:
    from .data.prepare import prepare
    from .errors import VocabError

    try:
        r = prepare(
            args.sources, args.out, _config(args), valid_fraction=args.valid_fraction,
            test_fraction=args.test_fraction, seed=args.seed, workers=args.workers, timeout=args.timeout,
            progress=not args.quiet, bpe_vocab=args.bpe_vocab, start_method=args.start_method,
        )
    except (FileNotFoundError, VocabError) as exc:
        print(f"midigen prepare: error: {exc}", file=sys.stderr)
        return 2
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


def cmd_train(args) -> int:
    import json

    from .train import TrainConfig, Trainer, TrainingError

    train_kw, model_kw = {}, {}
    if args.config:
        conf = json.loads(open(args.config).read())
        train_kw.update(conf.get("train", {}))
        model_kw.update(conf.get("model", {}))
    for name in ("data", "out", "model", "strategy", "location", "batch_size", "grad_accum", "seq_len", "max_steps",
                 "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "eval_interval", "eval_batches",
                 "patience", "seed", "device"):
        v = getattr(args, name)
        if v is not None:
            train_kw[name] = v
    if train_kw.get("eval_batches") == 0:  # 0 on the command line: the whole validation split
        train_kw["eval_batches"] = None
    if args.compile:
        train_kw["compile"] = True
    if args.quiet:
        train_kw["progress"] = False
    for name in ("n_layer", "n_head", "n_embd", "dropout", "position", "xl_memory", "knn_topk", "knn_capacity", "knn_search"):
        v = getattr(args, name)
        if v is not None:
            model_kw[name] = v
    if args.no_musical:
        model_kw["musical"] = False
    if args.knn_layers:
        model_kw["knn_layers"] = tuple(int(i) for i in args.knn_layers.split(","))
    cfg = TrainConfig.from_dict(train_kw)
    trainer = Trainer(cfg, model_kw, resume=args.resume)
    if trainer.is_main:
        n = trainer.raw_model.num_params()
        print(f"{cfg.model}: {n / 1e6:.2f}M parameters, vocabulary {len(trainer.tokenizer)}, "
              f"{trainer.train_data.n_tokens:,} training tokens, device {trainer.device}"
              + (f", {trainer.world} processes" if trainer.world > 1 else "")
              + (f", resuming at step {trainer.step}" if args.resume else ""))
    try:
        m = trainer.train()
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if trainer.is_main and m:
        print(f"step {trainer.step}: valid loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}, "
              f"{m['bits_per_token']:.3f} bits/token; checkpoints in {cfg.out}/latest and {cfg.out}/best")
    return 0


def cmd_generate(args) -> int:
    from .checkpoint import CheckpointError, load_model
    from .generate import SamplingConfig, generate, prompt_from_midi
    from .midi import write_midi

    try:
        model, tokenizer, meta = load_model(args.checkpoint, device=args.device)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.int8:
        from .generate import quantize_for_cpu

        model = quantize_for_cpu(model)
    prompt = prompt_from_midi(args.prompt, tokenizer, beats=args.prompt_beats) if args.prompt else None
    cfg = SamplingConfig(max_new_tokens=args.max_tokens, temperature=args.temperature,
                         note_temperature=args.note_temperature, duration_temperature=args.duration_temperature,
                         top_k=args.top_k, top_p=args.top_p, min_length=args.min_length, seed=args.seed)
    outs = generate(model, tokenizer, prompt, num_samples=args.num_samples, config=cfg)
    from pathlib import Path

    out = Path(args.out)
    for i, toks in enumerate(outs):
        path = out if args.num_samples == 1 else out.with_name(f"{out.stem}_{i}{out.suffix}")
        score = tokenizer.decode(toks.ids)
        write_midi(score, path)
        n_prompt = 0 if prompt is None else len(prompt)
        print(f"{path}: {len(toks) - n_prompt} new tokens, {score.n_notes} notes, {score.end_beats.max(initial=0):.1f} beats")
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import CheckpointError
    from .evaluate import evaluate, format_table, write_json

    try:
        result = evaluate(args.checkpoint, args.data, args.split, samples=args.samples, max_new_tokens=args.max_tokens,
                          seed=args.seed, device=args.device, max_batches=args.max_batches, progress=not args.quiet)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"written to {args.json}")
    return 0


def cmd_render(args) -> int:
    from .errors import MidiError
    from .playback import DEFAULT_SAMPLE_RATE, PlaybackError, render, write_wav

    try:
        audio = render(args.file, args.sample_rate or DEFAULT_SAMPLE_RATE, args.soundfont)
    except (PlaybackError, MidiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_wav(audio, args.out, args.sample_rate or DEFAULT_SAMPLE_RATE)
    print(f"{args.out}: {len(audio) / (args.sample_rate or DEFAULT_SAMPLE_RATE):.1f} s")
    return 0


def cmd_demo(args) -> int:
    from .checkpoint import CheckpointError
    from .demo import run_demo

    try:
        run_demo(args.out, checkpoint=args.checkpoint, samples=args.samples)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
    p.add_argument("--bpe-vocab", type=int, help="also learn action-aware BPE of this vocabulary size (train split only)")
    p.add_argument("--start-method", choices=("fork", "spawn"),
                   help="how worker processes start (default: fork on Linux when safe, else spawn)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _encoding_args(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model on a prepared corpus")
    p.add_argument("--data", help="prepared corpus folder (from `midigen prepare`)")
    p.add_argument("--out", help="run folder: checkpoints, TensorBoard logs, history")
    p.add_argument("--model", choices=["gpt", "xl", "knn", "xl+knn"],
                   help="gpt (default), or with memory: xl (Transformer-XL), knn (Memorizing Transformers), xl+knn")
    p.add_argument("--config", help="JSON file {\"train\": {...}, \"model\": {...}}; flags override it")
    p.add_argument("--resume", action="store_true", help="continue from OUT/latest exactly")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--min-lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--eval-interval", type=int)
    p.add_argument("--eval-batches", type=int, help="validation batches per evaluation (0: the whole split)")
    p.add_argument("--patience", type=int, help="early stopping: validations without improvement")
    p.add_argument("--strategy", choices=["random_windows", "per_song", "contiguous"])
    p.add_argument("--location", help="disk | ram | cuda: where the corpus lives")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-head", type=int)
    p.add_argument("--n-embd", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--position", choices=["learned", "rotary"])
    p.add_argument("--no-musical", action="store_true", help="no beat/bar embeddings")
    p.add_argument("--xl-memory", type=int, help="xl: tokens of the past each layer attends to (default seq-len)")
    p.add_argument("--knn-layers", help="knn: comma-separated layer indices (default: the last layer)")
    p.add_argument("--knn-capacity", type=int, help="knn: memories per row (default 2048)")
    p.add_argument("--knn-topk", type=int, help="knn: memories retrieved per query (default 32)")
    p.add_argument("--knn-search", choices=["exact", "faiss"],
                   help="knn: exact (default: batched matmul + top-k on the model's device) or faiss "
                        "(CPU, bounded memory for very large --knn-capacity; pip install faiss-cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="sample music from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint folder")
    p.add_argument("--out", required=True, help="output .mid (with --num-samples N: OUT_0.mid ...)")
    p.add_argument("--prompt", help="a MIDI file to continue")
    p.add_argument("--prompt-beats", type=float, help="use only the prompt's first N beats")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--note-temperature", type=float)
    p.add_argument("--duration-temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--min-length", type=int, default=0, help="no <eos> before this many tokens")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--int8", action="store_true", help="int8 weights for faster CPU sampling (dynamic quantisation)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("evaluate", help="likelihood on a split and music statistics of generated samples")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="prepared corpus folder")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--samples", type=int, default=16, help="pieces to generate for the statistics (0: none)")
    p.add_argument("--max-tokens", type=int, default=512, help="tokens per generated piece")
    p.add_argument("--max-batches", type=int, help="limit the likelihood pass (default: the whole split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("render", help="render a MIDI file to WAV with FluidSynth")
    p.add_argument("file")
    p.add_argument("--out", required=True, help="output .wav")
    p.add_argument("--soundfont", help="a .sf2 file (default: pretty_midi's bundled General MIDI SoundFont)")
    p.add_argument("--sample-rate", type=int, help="default 22050")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("demo", help="prepare data/bach, continue a held-out chorale, render, evaluate")
    p.add_argument("--out", default="out")
    p.add_argument("--checkpoint", default="checkpoints/bach-gpt")
    p.add_argument("--samples", type=int, default=8)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export-corpus", help="export music21's bundled corpus to MIDI files")
    p.add_argument("--composer", default="bach", help="folder(s) of music21's corpus, comma-separated (bach, beethoven, ...), or 'all' (default bach)")
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
