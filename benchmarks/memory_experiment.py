"""Does memory help where music repeats? The rotary GPT, a longer window, XL, kNN and XL+kNN, measured.

Five models under the same budget: the same corpus, the same ``contiguous`` batcher (each row
streams one piece in order; the pieces in a seeded shuffled order, the same for every model of a
seed with the same number of rows), the same tokens per optimizer step and number of steps, the same
width and depth (parameters within 0.01%):

=================  ============================================================================
``gpt-rotary``     the control: plain GPT, rotary positions, segments of S tokens
``long-context``   the same GPT attending over S + M tokens (segments of S + M, rows scaled by
                   S / (S + M) so tokens per step stay equal): is memory better than a longer
                   window at its cost?
``xl``             XL memory of M tokens per layer, segments of S
``knn``            kNN memory (Memorizing Transformers) in the last layer, segments of S
``xl+knn``         both
=================  ============================================================================

and the remedies the earlier study named (run at seed 0 first): ``knn-closed`` (the kNN gate
initialised closed, ``knn_gate`` = -4), ``knn-middle`` (the kNN layer in the middle of the stack),
``gpt-rotary-half`` and ``knn-half`` (segments of S / 2, rows doubled); and ``knn-large``, a kNN
memory of 4x the capacity (8,192 per row: most repeats of this corpus lie thousands of tokens back).

Every model is scored on the validation split by `midigen.metrics.likelihood` with
``repeats=True`` (each piece streamed in order, so a memory model's memories fill as in training),
at its own segment length, and its per-token losses are also grouped at the **reference context**
S (the control's segment length), so that every model is compared on the same tokens:
``first_segment``, ``novel``, ``repeat_near`` (the bar was heard before within the segment) and
``repeat_far`` (heard before, beyond the segment: where only a memory or a longer window can
bring it back); see `midigen.repeats`. Paired differences by seed go to the control and to the
long-context control.

Commands (the long-piece corpus of ``midigen export-corpus --set long``)::

    midigen prepare /tmp/long --out data/prepared/long --valid-fraction 0.08 --test-fraction 0.08 --workers 0
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/memory_experiment.py --steps 500 --seeds 0,1,2 --threads 1
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/memory_experiment.py --steps 500 --seeds 0 --threads 1 \\
        --variants knn-closed,knn-middle,gpt-rotary-half,knn-half,knn-large

Resumable: a run whose ``result.json`` exists in ``--out`` (default out/memory_experiment) is not
rerun, nor one that another process is training (its folder changed in the last 5 minutes), so
several invocations can run one after the other or side by side. Every invocation gathers
all finished runs of ``--out`` into ``results.json`` there and into
``benchmarks/results/<name of --out>.json`` (small, committed), and prints the Markdown tables
(``--report`` only prints them).
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
from midigen.metrics import _split_groups, likelihood  # noqa: E402
from midigen.repeats import GROUPS  # noqa: E402
from midigen.train import TrainConfig, Trainer  # noqa: E402

MAIN = ("gpt-rotary", "long-context", "xl", "knn", "xl+knn")
REMEDIES = ("knn-closed", "knn-middle", "gpt-rotary-half", "knn-half", "knn-large")
COLUMNS = ("all", *GROUPS)


def setup(variant: str, args) -> tuple[str, dict, int, int]:
    """(model preset, model config overrides, segment length, rows) of a variant."""
    S, B = args.segment, args.batch
    kw = dict(n_layer=args.layers, n_head=args.heads, n_embd=args.width, dropout=0.0, position="rotary")
    knn = dict(knn_capacity=args.knn_capacity, knn_topk=args.knn_topk)
    if variant == "gpt-rotary":
        return "gpt", kw, S, B
    if variant == "long-context":  # the same tokens per step: rows x (S + M) = B x S
        rows = B * S // (S + args.memory)
        assert rows * (S + args.memory) == B * S, "choose --batch so that batch * S / (S + M) is whole"
        return "gpt", kw, S + args.memory, rows
    if variant in ("xl", "xl+knn"):
        return variant, {**kw, "xl_memory": args.memory, **(knn if "knn" in variant else {})}, S, B
    if variant == "knn":
        return "knn", {**kw, **knn}, S, B
    if variant == "knn-closed":
        return "knn", {**kw, **knn, "knn_gate": args.closed_gate}, S, B
    if variant == "knn-middle":
        return "knn", {**kw, **knn, "knn_layers": (args.layers // 2,)}, S, B
    if variant == "gpt-rotary-half":
        return "gpt", kw, S // 2, B * 2
    if variant == "knn-half":
        return "knn", {**kw, **knn}, S // 2, B * 2
    if variant == "knn-large":
        return "knn", {**kw, **knn, "knn_capacity": 4 * args.knn_capacity}, S, B
    raise ValueError(f"unknown variant {variant!r} (known: {', '.join(MAIN + REMEDIES)})")


def group_losses(losses: np.ndarray, groups: np.ndarray) -> dict:
    out = {"all": {"loss": float(losses.mean()), "tokens": len(losses)}}
    for k, name in enumerate(GROUPS):
        sel = groups == k
        out[name] = {"loss": float(losses[sel].mean()) if sel.any() else float("nan"), "tokens": int(sel.sum())}
    return out


def evaluate(folder: Path, rows: int, seg: int, args, valid: PreparedCorpus, reference: np.ndarray) -> dict:
    """Score a finished run on the validation split: the result's loss fields."""
    model, _, _ = load_model(folder / "latest")
    t0 = time.perf_counter()
    m = likelihood(model, valid, batch_size=rows, seq_len=seg, per_token=True, repeats=True,
                   beats_per_bar=args.beats_per_bar)
    losses = m["token_losses"].astype(np.float64)
    pieces = m["token_pieces"]
    groups = reference[valid.starts[pieces] + m["token_positions"]]
    # per piece and group (reference context): summed loss and tokens, to see which pieces carry a group
    sums = np.zeros((len(valid), len(GROUPS)))
    np.add.at(sums, (pieces, groups), losses)
    counts = np.zeros((len(valid), len(GROUPS)), np.int64)
    np.add.at(counts, (pieces, groups), 1)
    return {"eval_seconds": time.perf_counter() - t0,
            "groups": group_losses(losses, groups),  # at the reference context S: comparable
            "groups_own_context": m["repeats"]["groups"],  # at the model's own segment length
            "pieces": [{"name": Path(name).stem, "loss_sums": sums[i].tolist(), "tokens": counts[i].tolist()}
                       for i, name in enumerate(valid.names)],
            # the earlier study's keys (notebook 05 reads them)
            "loss": m["loss"], "first_segment_loss": m["first_segment"]["loss"],
            "later_segments_loss": m["later_segments"]["loss"], "later_tokens": m["later_segments"]["tokens"],
            "tokens": m["tokens"]}


def run(variant: str, seed: int, args, valid: PreparedCorpus, reference: np.ndarray) -> dict:
    out = Path(args.out) / f"{variant}-seed{seed}"
    model_name, model_kw, seg, rows = setup(variant, args)
    cfg = TrainConfig(data=args.data, out=str(out), model=model_name, strategy="contiguous", batch_size=rows,
                      seq_len=seg, max_steps=args.steps, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(100, args.steps // 10), eval_interval=args.steps, eval_batches=2,
                      seed=seed, device="cpu", progress=not args.quiet, shuffle=True)
    t0 = time.perf_counter()
    # shuffle: pieces in a seeded order, not corpus order: under one epoch, corpus order would train every
    # model on the first composers alphabetically only, and a different subset for each number of rows
    trainer = Trainer(cfg, model_kw, overwrite=True)  # a folder without result.json: an unfinished run
    n_params = trainer.raw_model.num_params()
    trainer.train()
    train_s = time.perf_counter() - t0
    r = {"variant": variant, "seed": seed, "model": model_name, "segment": seg, "rows": rows,
         "params": n_params, "train_seconds": train_s, "tokens_seen": args.steps * rows * seg,
         "model_config": model_kw, **evaluate(out, rows, seg, args, valid, reference)}
    (out / "result.json").write_text(json.dumps(r, indent=1, default=list))
    return r


def rescore(folder: Path, args, valid: PreparedCorpus, reference: np.ndarray) -> None:
    """Evaluate a finished run again (runs scored before the per-piece sums were kept)."""
    r = json.loads((folder / "result.json").read_text())
    r.update(evaluate(folder, r["rows"], r["segment"], args, valid, reference))
    (folder / "result.json").write_text(json.dumps(r, indent=1, default=list))


def in_progress(folder: Path, minutes: float = 5.0) -> bool:
    """Another process is training this run (its folder changed in the last minutes): leave it."""
    files = list(folder.rglob("*")) if folder.exists() else []
    return bool(files) and time.time() - max(f.stat().st_mtime for f in files) < minutes * 60


def corpus_table(data: str, segment: int) -> str:
    lines = ["| split | pieces | tokens | shortest | quartiles | longest | segments of the shortest |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for split in ("train", "valid", "test"):
        c = PreparedCorpus(data, split)
        q = np.percentile(c.lengths, [25, 50, 75]).astype(int)
        lines.append(f"| {split} | {len(c)} | {c.n_tokens:,} | {c.lengths.min():,} | {q[0]:,} / {q[1]:,} / {q[2]:,} "
                     f"| {c.lengths.max():,} | {c.lengths.min() / segment:.0f} |")
    return "\n".join(lines)


def tables(results: list[dict]) -> str:
    by = {}
    for r in results:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    variants = [v for v in MAIN + REMEDIES if v in by]

    def loss(r, col):
        return r["groups"][col]["loss"]

    first = next(iter(results))
    counts = ", ".join(f"{c} {first['groups'][c]['tokens']:,}" for c in COLUMNS)
    lines = [f"Valid tokens per group (reference context): {counts}.", "",
             "| model | params | seeds | train time | " + " | ".join(COLUMNS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(COLUMNS)]
    for v in variants:
        rs = list(by[v].values())
        cells = []
        for col in COLUMNS:
            x = np.array([loss(r, col) for r in rs])
            cells.append(f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}")
        t = np.mean([r["train_seconds"] for r in rs])
        lines.append(f"| {v} | {rs[0]['params'] / 1e6:.3f}M | {len(rs)} | {t:.0f} s | " + " | ".join(cells) + " |")
    for control in ("gpt-rotary", "long-context"):
        if control not in by:
            continue
        lines += ["", f"Paired by seed, minus `{control}` (nats per token; negative: better): mean ± sd of the "
                  "differences, then each seed's", "",
                  "| model | seeds | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
        for v in variants:
            seeds = sorted(set(by[v]) & set(by[control]))
            if v == control or not seeds:
                continue
            cells = []
            for col in COLUMNS:
                d = np.array([loss(by[v][s], col) - loss(by[control][s], col) for s in seeds])
                each = " / ".join(f"{x:+.3f}" for x in d)
                cells.append(f"**{d.mean():+.3f}** ± {d.std(ddof=1):.3f} ({each})" if len(d) > 1 else f"{d[0]:+.3f}")
            lines.append(f"| {v} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    if "knn-half" in by and "gpt-rotary-half" in by:  # the half-segment pair, at its own context
        lines += ["", "Half segments, at their own context (S / 2): `knn-half` minus `gpt-rotary-half`", "",
                  "| seed | " + " | ".join(GROUPS) + " |", "|---|" + "---|" * len(GROUPS)]
        for s in sorted(set(by["knn-half"]) & set(by["gpt-rotary-half"])):
            a, b = by["knn-half"][s]["groups_own_context"], by["gpt-rotary-half"][s]["groups_own_context"]
            lines.append(f"| {s} | " + " | ".join(f"{a[g]['loss'] - b[g]['loss']:+.3f} ({a[g]['tokens']:,} tokens)"
                                                  for g in GROUPS) + " |")
    lines += piece_table(by, variants)
    return "\n".join(lines)


def piece_table(by: dict, variants: list[str], min_far: int = 1000) -> list[str]:
    """Paired differences to the control in the pieces that carry the far repeats and in the rest."""
    runs = [r for v in variants for r in by[v].values() if "pieces" in r]
    if "gpt-rotary" not in by or not runs:
        return []
    far = GROUPS.index("repeat_far")
    heavy = np.array([p["tokens"][far] >= min_far for p in runs[0]["pieces"]])
    names = ", ".join(p["name"] for p, h in zip(runs[0]["pieces"], heavy, strict=True) if h)

    def pooled(r, group, which):
        k = GROUPS.index(group)
        sums = np.array([p["loss_sums"][k] for p in r["pieces"]])[which]
        counts = np.array([p["tokens"][k] for p in r["pieces"]])[which]
        return sums.sum() / counts.sum()

    cols = [(g, w, label) for g in ("repeat_far", "novel") for w, label in ((heavy, "heavy"), (~heavy, "rest"))]
    head = " | ".join(f"{g}, {label} ({sum(p['tokens'][GROUPS.index(g)] for p, x in zip(runs[0]['pieces'], w, strict=True) if x):,})"
                      for g, w, label in cols)
    lines = ["", f"By piece, minus `gpt-rotary`, mean ± sd over seeds: heavy = the pieces with >= {min_far} "
             f"repeat_far tokens ({names}), rest = the other pieces (tokens in brackets)", "",
             f"| model | seeds | {head} |", "|---|---|" + "---|" * len(cols)]
    control = by["gpt-rotary"]
    for v in variants:
        seeds = [s for s in sorted(by[v]) if s in control and "pieces" in by[v][s] and "pieces" in control[s]]
        if v == "gpt-rotary" or not seeds:
            continue
        cells = []
        for g, w, _ in cols:
            d = np.array([pooled(by[v][s], g, w) - pooled(control[s], g, w) for s in seeds])
            cells.append(f"{d.mean():+.3f} ± {d.std(ddof=1):.3f}" if len(d) > 1 else f"{d[0]:+.3f}")
        lines.append(f"| {v} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/prepared/long")
    p.add_argument("--out", default="out/memory_experiment")
    p.add_argument("--variants", default=",".join(MAIN), help="comma-separated, of: " + ", ".join(MAIN + REMEDIES))
    p.add_argument("--seeds", default="0,1,2", help="comma-separated")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=8, help="rows per step at segment length S")
    p.add_argument("--segment", type=int, default=128, help="S: the segment length (and the reference context)")
    p.add_argument("--memory", type=int, default=128, help="M: XL memory, and what the long-context model adds")
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--knn-capacity", type=int, default=2048)
    p.add_argument("--knn-topk", type=int, default=32)
    p.add_argument("--closed-gate", type=float, default=-4.0, help="knn-closed: the gate's initial logit")
    p.add_argument("--beats-per-bar", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only gather the finished runs and print the tables")
    p.add_argument("--rescore", action="store_true", help="score again the finished runs without per-piece sums")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    valid = PreparedCorpus(args.data, "valid")
    reference = _split_groups(valid, args.segment, args.beats_per_bar)
    if args.rescore:
        for f in sorted(out.glob("*/result.json")):
            if "pieces" not in json.loads(f.read_text()):
                rescore(f.parent, args, valid, reference)
    if not args.report:
        for seed in map(int, args.seeds.split(",")):
            for variant in args.variants.split(","):
                folder = out / f"{variant}-seed{seed}"
                if (folder / "result.json").exists() or in_progress(folder):
                    continue
                r = run(variant, seed, args, valid, reference)
                print(json.dumps({k: r[k] for k in ("variant", "seed", "params", "train_seconds", "loss")}
                                 | {g: round(r["groups"][g]["loss"], 4) for g in GROUPS}), flush=True)
    results = [json.loads(f.read_text()) for f in sorted(out.glob("*/result.json"))]
    manifest = json.loads((Path(args.data) / "manifest.json").read_text())
    record = json.dumps({"args": vars(args), "corpus": manifest["splits"], "results": results}, indent=1)
    (out / "results.json").write_text(record)
    committed = Path(__file__).parent / "results" / f"{out.name}.json"  # small: kept with the repo
    committed.parent.mkdir(exist_ok=True)
    committed.write_text(record)
    print(corpus_table(args.data, args.segment), "\n")
    if results:
        print(tables(results))


if __name__ == "__main__":
    main()
