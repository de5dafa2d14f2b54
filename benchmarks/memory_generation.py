"""Does memory make a model repeat itself at long range, as music does? (issue 15, item 4)

The models of `benchmarks/memory_experiment.py` (its ``--out`` folder) continue held-out pieces
for thousands of tokens, with and without memory, and each continuation is measured by
`midigen.repeats`: the share of its tokens whose bar (equal up to transposition) was heard before
in the piece (prompt included), and the share whose earlier occurrence lies more than ``--far``
tokens back (beyond the plain model's window: **long-range self-repetition**). The same shares of
the pieces' own continuations (the same span of tokens after the same prompt) are the data's rate.

Every model continues every valid piece from its first ``--prompt`` tokens for ``--tokens``
tokens, ``--samples`` times (temperature 1, seeded). Writes
``benchmarks/results/memory_generation.json`` and prints a table; with ``--midi DIR`` also the
continuations of ``--listen`` (a valid piece's name) as MIDI files, for notebook 05.

Command (after the study's runs)::

    OMP_NUM_THREADS=1 python benchmarks/memory_generation.py --seeds 0 --midi benchmarks/results/memory_listen
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from midigen.checkpoint import load_model
from midigen.data import PreparedCorpus
from midigen.encoding import Tokens
from midigen.generate import generate
from midigen.midi import write_midi
from midigen.repeats import repeat_groups


def shares(ids: np.ndarray, steps: np.ndarray, tok, start: int, far: int, beats_per_bar: int) -> dict:
    """Shares of the tokens from ``start`` on that repeat an earlier bar, and at over ``far`` tokens."""
    _, d = repeat_groups(ids, steps, tok, context=far, beats_per_bar=beats_per_bar, return_distance=True)
    d = d[start:]
    return {"tokens": len(d), "repeat": float((d > 0).mean()), "repeat_far": float((d > far).mean())}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="out/memory_experiment", help="the study's --out folder")
    p.add_argument("--data", default="data/prepared/long")
    p.add_argument("--variants", default="gpt-rotary,long-context,xl,knn,xl+knn")
    p.add_argument("--seeds", default="0")
    p.add_argument("--prompt", type=int, default=1024, help="prompt tokens (from each piece's start)")
    p.add_argument("--tokens", type=int, default=2048, help="tokens to continue")
    p.add_argument("--samples", type=int, default=2, help="continuations per piece and model")
    p.add_argument("--far", type=int, default=128, help="long range: an earlier occurrence more tokens back than this")
    p.add_argument("--beats-per-bar", type=int, default=4)
    p.add_argument("--listen", default="corpus_multitrack_Funkytown", help="the valid piece whose continuations --midi writes")
    p.add_argument("--midi", default=None, help="folder for the --listen piece's continuations as MIDI")
    p.add_argument("--out", default="benchmarks/results/memory_generation.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    valid = PreparedCorpus(args.data, "valid")
    tok = valid.tokenizer
    pieces = [i for i in range(len(valid)) if valid.lengths[i] >= args.prompt + args.tokens]
    names = [Path(valid.names[i]).stem for i in pieces]
    data = {}
    for i, name in zip(pieces, names, strict=True):
        ids, steps = (np.asarray(a, np.int64) for a in valid.piece(i))
        end = args.prompt + args.tokens
        data[name] = shares(ids[:end], steps[:end], tok, args.prompt, args.far, args.beats_per_bar)
    rows = {"data": data}
    for variant in args.variants.split(","):
        for seed in map(int, args.seeds.split(",")):
            folder = Path(args.runs) / f"{variant}-seed{seed}" / "latest"
            if not folder.exists():
                print(f"skip {variant} seed {seed}: no {folder}")
                continue
            model, mtok, _ = load_model(folder)
            t0, per = time.perf_counter(), {}
            for i, name in zip(pieces, names, strict=True):
                ids, steps = (np.asarray(a, np.int64) for a in valid.piece(i))
                prompt = Tokens(ids[: args.prompt].astype(tok.dtype), steps[: args.prompt].astype(np.int32),
                                tokenizer=mtok)
                outs = generate(model, mtok, prompt, num_samples=args.samples, seed=1000 * seed + i,
                                max_new_tokens=args.tokens, min_length=args.prompt + args.tokens)
                per[name] = [shares(np.asarray(o.ids, np.int64), np.asarray(o.steps, np.int64), tok, args.prompt,
                                    args.far, args.beats_per_bar) for o in outs]
                if args.midi and name == args.listen:
                    out = Path(args.midi)
                    out.mkdir(parents=True, exist_ok=True)
                    write_midi(outs[0].to_score(), out / f"{name}-{variant}-seed{seed}.mid")
            rows[f"{variant}-seed{seed}"] = {"variant": variant, "seed": seed, "seconds": time.perf_counter() - t0,
                                             "pieces": per}
            print(f"{variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.midi:
        i = pieces[names.index(args.listen)]
        ids, steps = (np.asarray(a, np.int64) for a in valid.piece(i))
        end = args.prompt + args.tokens
        write_midi(Tokens(ids[:end].astype(tok.dtype), steps[:end].astype(np.int32), tokenizer=tok).to_score(),
            Path(args.midi) / f"{args.listen}-data.mid")
    record = {"args": vars(args), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(table(record))


def table(record: dict) -> str:
    """Mean shares over pieces (and samples) per model, and paired to the data piece by piece."""
    rows = record["rows"]
    data = rows["data"]
    lines = ["| continuation | pieces | repeats an earlier bar | long-range (beyond "
             f"{record['args']['far']} tokens) | long-range minus the data's, paired by piece |",
             "|---|---:|---:|---:|---:|"]
    d_rep = np.mean([v["repeat"] for v in data.values()])
    d_far = np.array([v["repeat_far"] for v in data.values()])
    lines.append(f"| the pieces' own (data) | {len(data)} | {d_rep:.1%} | {d_far.mean():.1%} | |")
    by_variant = {}
    for key, r in rows.items():
        if key == "data":
            continue
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, rs in by_variant.items():
        rep, far, diff = [], [], []
        for r in rs:
            for name, samples in r["pieces"].items():
                rep += [s["repeat"] for s in samples]
                f = np.mean([s["repeat_far"] for s in samples])
                far.append(f)
                diff.append(f - data[name]["repeat_far"])
        diff = np.array(diff)
        lines.append(f"| {variant} (seeds {','.join(str(r['seed']) for r in rs)}) | {len(rs[0]['pieces'])} | "
                     f"{np.mean(rep):.1%} | {np.mean(far):.1%} | {diff.mean():+.1%} ± {diff.std(ddof=1):.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
