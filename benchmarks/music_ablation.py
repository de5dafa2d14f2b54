"""Does it sound more like Bach? The music issue's ablation: parts, augmentation, velocity.

Same model (today's bundled size: 4 layers, 256 wide, 3.4M parameters), same token budget
(``--steps`` optimizer steps of 8 rows x 256 tokens), same schedule, on the bundled chorales'
train split; measured on the held-out test split. Cumulative variants::

    a  today: programs only (the four voices merged), no augmentation
    b  + parts (the four voices kept apart)
    c  + augmentation (transposition in [-6, 6] per piece, tempo +-2 bins)
    d  + velocity tokens (16 bins)

For each variant and seed: test loss, bits per note (over the notes that encoding carries, and
over the notes of the merged encoding, the same for every variant: parts keep voice doublings
that (a) merges, so its own count is larger), and the music statistics of ``--samples``
continuations of 8-beat test prompts (each as long as its real piece, measured after the prompt)
against the real continuations. Paired differences by seed to the previous variant and to (a).
``--full RUN`` adds a row for a run of the full recipe (`midigen train --recipe bach`, evaluated
the same way). The row ``data`` compares the valid split's real continuations with the test
split's: the overlap two samples of real chorales reach (the ceiling at this sample size).

    .venv/bin/python benchmarks/music_ablation.py --steps 600 --seeds 0 1 2 --markdown \\
        --full runs/bach-recipe

Writes ``--out`` (default out/music_ablation): the prepared corpora, a run folder and a
``results.json`` per run (a finished run is not run again), and a copy of all results as
``benchmarks/results/music_ablation.json``.
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

from _tables import print_table  # noqa: E402
from midigen.checkpoint import load_model  # noqa: E402
from midigen.data import PreparedCorpus  # noqa: E402
from midigen.data.prepare import prepare  # noqa: E402
from midigen.encoding import EncodingConfig  # noqa: E402
from midigen.encoding.vocab import K_NOTE  # noqa: E402
from midigen.evaluate import EvaluateConfig, continuations, evaluate, real_continuations  # noqa: E402
from midigen.metrics import compare  # noqa: E402
from midigen.train import TrainConfig, Trainer  # noqa: E402

MERGED = EncodingConfig(parts=False, velocity_bins=0)
PARTS = EncodingConfig(parts=True, velocity_bins=0)
PARTS_VELOCITY = EncodingConfig(parts=True, velocity_bins=16)
VARIANTS = {  # name: (encoding, transpose, tempo_shift, what)
    "a": (MERGED, 0, 0, "today: voices merged"),
    "b": (PARTS, 0, 0, "+ parts"),
    "c": (PARTS, 6, 2, "+ augmentation"),
    "d": (PARTS_VELOCITY, 6, 2, "+ velocity"),
}
MODEL = {"n_layer": 4, "n_head": 4, "n_embd": 256, "dropout": 0.1}  # today's bundled model


def corpus_for(encoding: EncodingConfig, out: Path) -> Path:
    name = "merged" if not encoding.parts else "parts" + (f"-v{encoding.velocity_bins}" if encoding.velocity_bins else "")
    path = out / "data" / name
    if not (path / "manifest.json").is_file():
        prepare(["bach"], path, encoding, workers=0, progress=False)
    return path


def run(name: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    result_path = out / f"{name}-seed{seed}" / "results.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    encoding, transpose, tempo_shift, _ = VARIANTS[name]
    data = corpus_for(encoding, out)
    cfg = TrainConfig(data=str(data), out=str(result_path.parent), batch_size=8, seq_len=256, max_steps=args.steps,
                      lr=1e-3, min_lr=1e-4, warmup_steps=60, eval_interval=args.steps, eval_batches=None,
                      transpose=transpose, tempo_shift=tempo_shift, seed=seed, device="cpu", progress=False)
    done = result_path.parent / "trained.json"  # (a run trained but not measured: measured only)
    if not done.is_file():
        t0 = time.time()
        trainer = Trainer(cfg, dict(MODEL), overwrite=True)
        trainer.train()
        done.write_text(json.dumps({"train_s": time.time() - t0, "params": trainer.raw_model.num_params()}))
    result = measure(result_path.parent / "latest", data, args, seed)
    result.update(variant=name, seed=seed, **json.loads(done.read_text()))
    result_path.write_text(json.dumps(result, indent=1))
    return result


def measure(checkpoint: Path, data: Path, args: argparse.Namespace, seed: int) -> dict:
    """Test likelihood, and the statistics of each continuation and real continuation (kept raw, so
    the tables compare them with the current `midigen.metrics.compare`)."""
    r = evaluate(checkpoint, data, "test", samples=0, progress=False)
    lk = r["likelihood"]
    merged = PreparedCorpus(corpus_for(MERGED, Path(args.out)), "test", location="ram")
    merged_notes = int(np.count_nonzero(merged.tokenizer.table.kind[np.asarray(merged.tokens)] == K_NOTE))
    total_bits = lk["loss"] * lk["tokens"] / np.log(2)
    model, tokenizer, _ = load_model(checkpoint)
    cfg = EvaluateConfig(samples=args.samples, prompt_beats=args.prompt_beats, seed=seed, progress=False)
    generated, reference = continuations(model, tokenizer, PreparedCorpus(data, "test"), cfg)
    return {"loss": lk["loss"], "tokens": lk["tokens"], "notes": lk["notes"], "bits_per_note": lk["bits_per_note"],
            "bits_per_merged_note": total_bits / merged_notes, "merged_notes": merged_notes,
            "samples": len(generated), "raw": {"generated": generated, "reference": reference}}


def overlaps(r: dict) -> dict:
    """Per statistic, the overlap of a run's continuations with the real ones."""
    return {k: v["overlap"] for k, v in compare(r["raw"]["generated"], r["raw"]["reference"]).items()}


def data_ceiling(args: argparse.Namespace) -> dict:
    """The real valid continuations against the real test ones: what two real samples overlap."""
    path = corpus_for(MERGED, Path(args.out))
    valid, test = (real_continuations(PreparedCorpus(path, split), args.prompt_beats) for split in ("valid", "test"))
    return compare(valid, test)


def mean_sd(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def tables(results: dict, full: dict | None, ceiling: dict, markdown: bool) -> None:
    names = [n for n in VARIANTS if results.get(n)]
    rows = []
    for n in names:
        rs = results[n]
        rows.append([f"({n}) {VARIANTS[n][3]}", str(len(rs)), mean_sd([r["loss"] for r in rs]),
                     mean_sd([r["bits_per_note"] for r in rs]), mean_sd([r["bits_per_merged_note"] for r in rs]),
                     mean_sd([min(overlaps(r).values()) for r in rs]),
                     mean_sd([np.mean(list(overlaps(r).values())) for r in rs]),
                     f"{np.mean([r['train_s'] for r in rs]) / 60:.1f}"])
    if full:
        rows.append([f"(e) full recipe ({full['params'] / 1e6:.1f}M, {full['steps']} steps)", "1",
                     f"{full['loss']:.3f}", f"{full['bits_per_note']:.3f}", f"{full['bits_per_merged_note']:.3f}",
                     f"{min(overlaps(full).values()):.3f}", f"{np.mean(list(overlaps(full).values())):.3f}", "-"])
    print_table("Test split, mean ± sd over seeds", ["variant", "seeds", "loss/token", "bits/note",
                "bits/merged note", "min overlap", "mean overlap", "train min"], rows, markdown)

    rows = []
    for n, prev in zip(names[1:], names[:-1]):
        for ref in dict.fromkeys((prev, "a")):
            pairs = {r["seed"]: r for r in results[ref]}
            same = [(r, pairs[r["seed"]]) for r in results[n] if r["seed"] in pairs]
            if not same:
                continue
            d_bits = [r["bits_per_merged_note"] - q["bits_per_merged_note"] for r, q in same]
            d_mean = [np.mean(list(overlaps(r).values())) - np.mean(list(overlaps(q).values())) for r, q in same]
            rows.append([f"({n}) - ({ref})", str(len(same)), mean_sd(d_bits),
                         " ".join(f"{d:+.3f}" for d in d_bits), mean_sd(d_mean)])
    print_table("Paired differences by seed (negative bits: better)",
                ["pair", "seeds", "Δ bits/merged note", "per seed", "Δ mean overlap"], rows, markdown)

    stats = list(ceiling)
    rows = []
    for n in names:
        rows.append([f"({n})"] + [f"{np.mean([overlaps(r)[k] for r in results[n]]):.2f}" for k in stats])
    if full:
        rows.append(["(e)"] + [f"{overlaps(full)[k]:.2f}" for k in stats])
    rows.append(["data (valid vs test)"] + [f"{ceiling[k]['overlap']:.2f}" for k in stats])
    print_table("Overlap with the real continuations, per statistic (mean over seeds)", ["variant"] + stats, rows,
                markdown)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--prompt-beats", type=float, default=8.0)
    ap.add_argument("--full", help="run folder of a full-recipe run to add as row (e)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="out/music_ablation")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list] = {n: [] for n in VARIANTS}
    for seed in args.seeds:  # seed-major: a partial run has every variant of the first seeds
        for n in args.variants:
            r = run(n, seed, args, out)
            results[n].append(r)
            print(f"({n}) seed {seed}: loss {r['loss']:.4f}, {r['bits_per_merged_note']:.3f} bits/merged note, "
                  f"min overlap {min(overlaps(r).values()):.2f}, "
                  f"{r['train_s'] / 60:.1f} min", flush=True)
    full = None
    if args.full:
        path = out / "full.json"
        if path.is_file() and json.loads(path.read_text()).get("run") == args.full:
            full = json.loads(path.read_text())
        else:
            from midigen.checkpoint import read_checkpoint

            _, meta, _ = read_checkpoint(args.full)
            ckpt = Path(args.full) / "best" if (Path(args.full) / "best").is_dir() else Path(args.full)
            full = measure(ckpt, corpus_for(PARTS_VELOCITY, out), args, 0)
            full.update(run=args.full, params=_params(ckpt), steps=meta["train_config"]["max_steps"])
            path.write_text(json.dumps(full, indent=1))
    ceiling = data_ceiling(args)
    tables(results, full, ceiling, args.markdown)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    def summary(r: dict | None) -> dict | None:  # (the raw statistics stay in --out: too big to commit)
        return r and {**{k: v for k, v in r.items() if k != "raw"}, "overlaps": overlaps(r)}

    Path("benchmarks/results/music_ablation.json").write_text(json.dumps(
        {"args": vars(args), "results": {n: [summary(r) for r in rs] for n, rs in results.items()},
         "full": summary(full), "data_ceiling": {k: v["overlap"] for k, v in ceiling.items()}}, indent=1))


def _params(checkpoint: Path) -> int:
    from midigen.checkpoint import load_model

    return load_model(checkpoint)[0].num_params()


if __name__ == "__main__":
    main()
