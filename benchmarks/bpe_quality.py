"""Does BPE help the model? The same GPT and compute, with and without BPE, compared fairly.

Losses per token do not compare across vocabularies (a BPE token carries more music), so the
validation loss is normalised per *base* token and per *note*: the same total information (in
nats) divided by the same counts. Also generation speed in notes per second (a BPE token
generates several base tokens at once).

    .venv/bin/python benchmarks/bpe_quality.py --steps 600 --bpe-vocab 1000

Prepares the bundled chorales (``midigen/assets/bach``) twice under ``--work`` (with and without ``--bpe-vocab``; the same split),
trains a GPT on each with the same steps x batch x sequence length, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from midigen.checkpoint import load_model  # noqa: E402
from midigen.data import PreparedCorpus  # noqa: E402
from midigen.data.prepare import prepare  # noqa: E402
from midigen.generate import generate  # noqa: E402
from midigen.metrics import likelihood  # noqa: E402
from midigen.train import TrainConfig, Trainer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="midigen/assets/bach")
    p.add_argument("--work", default="out/bpe_quality")
    p.add_argument("--bpe-vocab", type=int, default=1000)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    rows = []
    for name, bpe in (("base", None), (f"bpe {args.bpe_vocab}", args.bpe_vocab)):
        data = work / ("prepared_bpe" if bpe else "prepared_base")
        prepare([args.data], data, bpe_vocab=bpe, progress=False)
        run = work / ("run_bpe" if bpe else "run_base")
        cfg = TrainConfig(data=str(data), out=str(run), batch_size=args.batch, seq_len=args.seq_len, max_steps=args.steps,
                          lr=1e-3, min_lr=1e-4, warmup_steps=50, eval_interval=args.steps, eval_batches=None,
                          seed=args.seed, device="cpu", progress=False)
        t0 = time.perf_counter()
        Trainer(cfg, dict(n_layer=args.layers, n_head=args.heads, n_embd=args.width, dropout=0.1)).train()
        train_s = time.perf_counter() - t0
        model, tokenizer, _ = load_model(run / "latest")
        valid = PreparedCorpus(data, "valid")
        base_valid = PreparedCorpus(data, "valid", base=True)
        m = likelihood(model, valid, batch_size=args.batch, seq_len=args.seq_len)
        # the same nats over the same base tokens and notes, whatever the vocabulary
        base_tokens = base_valid.n_tokens - len(base_valid)  # targets: all but each piece's first token
        nats = m["loss"] * m["tokens"]
        t0 = time.perf_counter()
        outs = generate(model, tokenizer, num_samples=1, max_new_tokens=args.gen_tokens, seed=0, min_length=args.gen_tokens)
        gen_s = time.perf_counter() - t0
        notes = sum(tokenizer.decode(o.ids).n_notes for o in outs)
        rows.append({"tokenizer": name, "vocab": len(tokenizer), "params": model.num_params(),
                     "train_tokens": valid.n_tokens and PreparedCorpus(data, "train").n_tokens,
                     "valid_loss_per_token": m["loss"], "valid_nats_per_base_token": nats / base_tokens,
                     "valid_bits_per_note": m["bits_per_note"], "train_seconds": train_s,
                     "gen_tokens_per_s": args.gen_tokens / gen_s, "gen_notes_per_s": notes / gen_s})
        print(json.dumps(rows[-1]))
    (work / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    committed = Path(__file__).parent / "results" / "bpe_quality.json"  # small: kept with the repo
    committed.parent.mkdir(exist_ok=True)
    committed.write_text(json.dumps({"command": "python benchmarks/bpe_quality.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()), "rows": rows}, indent=1))
    print(f"\nSame model ({args.layers} layers, width {args.width}), same compute ({args.steps} steps x {args.batch} x "
          f"{args.seq_len} tokens), seed {args.seed}:\n")
    print("| tokenizer | vocab | params | train tokens | valid loss / token | nats / base token | bits / note | generation notes/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tokenizer']} | {r['vocab']} | {r['params'] / 1e6:.2f}M | {r['train_tokens']:,} | {r['valid_loss_per_token']:.4f} | "
              f"{r['valid_nats_per_base_token']:.4f} | {r['valid_bits_per_note']:.3f} | {r['gen_notes_per_s']:.0f} |")


if __name__ == "__main__":
    main()
