"""Does memory help? Vanilla GPT vs Transformer-XL vs kNN memory vs both, measured.

The research claim of the blog's "Transformer Memory" section, reproduced honestly on our data:
same parameter count (within 5%), same segment length, same token budget, same batches (the
``contiguous`` batcher for every model, so each row streams one piece in order); validation
loss per token on the held-out split, overall and for tokens *beyond the first segment* of their
piece (where a memory can matter).

    .venv/bin/python benchmarks/memory_experiment.py --data data/prepared/long --steps 1500 --seeds 0

Prepare the corpus first (the chorales plus long pieces: music21's longer works, and the
shared piano and band pieces)::

    midigen export-corpus --composer beethoven,mozart,haydn,schumann_robert,schumann_clara,chopin,schubert,handel,corelli,cpebach,verdi,weber,joplin,beach --out data/music21
    midigen prepare bach data/music21 ../shared/corpus/one_track ../shared/corpus/multitrack \
        --out data/prepared/long --workers 0 --valid-fraction 0.08 --test-fraction 0.05

(The results in RESULTS.md used the first 6 works that export finished: it is slow, music21
parses large MusicXML scores for minutes each. ``--resume`` keeps finished runs of OUT: use a
new ``--out`` when changing settings.)

Writes ``--out`` (default out/memory_experiment): per run the run folder and a ``results.json``,
a copy of it as ``benchmarks/results/<name of --out>.json`` (small, committed), and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from midigen.checkpoint import load_model  # noqa: E402
from midigen.data import PreparedCorpus  # noqa: E402
from midigen.metrics import likelihood  # noqa: E402
from midigen.train import TrainConfig, Trainer  # noqa: E402

# "gpt": the plain GPT (learned absolute positions); "gpt-rotary": the same with rotary
# positions, like the memory models, so position scheme and memory can be told apart.


def run(variant, args, seed) -> dict:
    out = Path(args.out) / f"{variant}-seed{seed}"
    model_kw = dict(n_layer=args.layers, n_head=args.heads, n_embd=args.width, dropout=0.0)
    model = variant
    if variant == "gpt-rotary":
        model, model_kw["position"] = "gpt", "rotary"
    if model != "gpt":
        model_kw.update(knn_capacity=args.knn_capacity, knn_topk=args.knn_topk)
        if "xl" in variant:
            model_kw["xl_memory"] = args.xl_memory
    cfg = TrainConfig(data=args.data, out=str(out), model=model, strategy="contiguous", batch_size=args.batch,
                      seq_len=args.segment, max_steps=args.steps, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(100, args.steps // 10), eval_interval=args.steps, eval_batches=None,
                      seed=seed, device="cpu", progress=not args.quiet)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, model_kw)
    n_params = trainer.raw_model.num_params()
    trainer.train()
    train_s = time.perf_counter() - t0
    model, codec, _ = load_model(out / "latest")
    valid = PreparedCorpus(args.data, args.split)
    m = likelihood(model, valid, batch_size=args.batch, seq_len=args.segment)
    return {"variant": variant, "seed": seed, "params": n_params, "train_seconds": train_s,
            "tokens_seen": args.steps * args.batch * args.segment, "loss": m["loss"],
            "first_segment_loss": m["first_segment"]["loss"], "later_segments_loss": m["later_segments"]["loss"],
            "later_tokens": m["later_segments"]["tokens"], "tokens": m["tokens"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/prepared/long")
    p.add_argument("--out", default="out/memory_experiment")
    p.add_argument("--variants", default="gpt,gpt-rotary,xl,knn,xl+knn")
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--segment", type=int, default=128)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--xl-memory", type=int, default=128)
    p.add_argument("--knn-capacity", type=int, default=1024)
    p.add_argument("--knn-topk", type=int, default=32)
    p.add_argument("--split", default="valid")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--resume", action="store_true", help="keep the finished runs in OUT/results.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    manifest = json.loads((Path(args.data) / "manifest.json").read_text())
    valid = PreparedCorpus(args.data, args.split)
    lengths = valid.lengths
    print(f"{args.data}: {args.split} split {len(valid)} pieces, {valid.n_tokens:,} tokens; piece length "
          f"median {int(np.median(lengths))}, {np.mean(lengths > args.segment + 1):.0%} longer than one segment")
    results = []
    previous = Path(args.out) / "results.json"
    if args.resume and previous.exists():  # keep finished runs of an earlier invocation
        results = [r for r in json.loads(previous.read_text())["results"]]
    for seed in map(int, args.seeds.split(",")):
        for variant in args.variants.split(","):
            if any(r["variant"] == variant and r["seed"] == seed for r in results):
                continue
            r = run(variant, args, seed)
            results.append(r)
            print(json.dumps(r))
            record = json.dumps({"args": vars(args), "corpus": manifest["splits"], "results": results}, indent=1)
            (Path(args.out) / "results.json").write_text(record)
            name = f"{Path(args.out).name}.json"  # out/memory_experiment -> memory_experiment.json
            committed = Path(__file__).parent / "results" / name  # small: kept with the repo
            committed.parent.mkdir(exist_ok=True)
            committed.write_text(record)
    print("\n| model | params | seeds | valid loss (all tokens) | first segment | beyond the first segment | train time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant in args.variants.split(","):
        rs = [r for r in results if r["variant"] == variant]
        if not rs:
            continue
        f = lambda k: np.mean([r[k] for r in rs])  # noqa: E731
        sd = lambda k: np.std([r[k] for r in rs]) if len(rs) > 1 else 0.0  # noqa: E731
        print(f"| {variant} | {rs[0]['params'] / 1e6:.2f}M | {len(rs)} | {f('loss'):.4f} ± {sd('loss'):.4f} | "
              f"{f('first_segment_loss'):.4f} | {f('later_segments_loss'):.4f} ± {sd('later_segments_loss'):.4f} | "
              f"{f('train_seconds'):.0f} s |")


if __name__ == "__main__":
    main()
