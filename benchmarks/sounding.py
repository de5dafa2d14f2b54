"""Does telling the model what is sounding steady its voices? (issue 14, the voices' joins)

A pair of fine-tunes from the same trained model, the same steps, data order and schedule: the
control goes on as it is, the other gets the sounding embeddings (`GPTConfig.sounding`: which
parts sound at each token, the steps to the first note's end, how many notes sound), which start
at zero, so both arms start from the same function. Each arm is then measured on the test split
by `midigen evaluate` (likelihood, and the music statistics of 38 continuations of 8-beat
prompts, with several sampling seeds), and by the **joins** of its continuations: for each part,
each note-to-note join is exact (the next note starts where this one ends), a *skip* (no time
step at the note's end at all: a gap ran past it), a *missing* note (a time step there, but not
for this part), or an *overlap* (the part's next note starts before this one ends).

Phases (each reads what the one before wrote; ``--phase all`` runs them in order):

``train``     ``midigen train --recipe bach --data D --init-from BASE --max-steps N --lr ... --seed S
              [--sounding]`` into ``runs/ft-{arm}-s{S}``, the two arms side by side (one thread each)
``evaluate``  ``midigen evaluate --checkpoint RUN --data D --split test --samples 38 --prompt-beats 8
              [--top-p 0.95] --seed K --json ...`` for each arm, setting and sampling seed
``joins``     the joins of each arm's continuations (the same prompts and seeds as evaluate)
``table``     paired differences (sounding - control) per setting, mean ± sd over sampling seeds

Commands (issue 14, fourth session: training seed 1, sampling seeds 0-2)::

    OMP_NUM_THREADS=1 python benchmarks/sounding.py --phase all --data data/prepared/bach-pv --train-seeds 1

(That session ran the train phase's two commands and the evaluations by hand, into runs/ft-ctrl
and runs/ft-snd, linked as runs/ft-{arm}-s1, then ``--phase joins --sample-seeds 0 --settings
p099,t1`` and ``--phase table``; results in benchmarks/results/sounding_evaluations.json and
sounding_joins.json, tables in benchmarks/RESULTS.md, "What is sounding".)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ARMS = ("ctrl", "snd")
SETTINGS = {"t1": [], "p095": ["--top-p", "0.95"], "p099": ["--top-p", "0.99"]}


def run_dir(args, arm: str, seed: int) -> Path:
    return Path(args.runs) / f"ft-{arm}-s{seed}"


def train(args) -> None:
    for seed in args.train_seeds:
        procs = []
        for arm in ARMS:
            out = run_dir(args, arm, seed)
            if (out / "best").is_dir():
                continue
            cmd = [sys.executable, "-m", "midigen", "train", "--recipe", "bach", "--data", args.data, "--out", str(out),
                   "--init-from", args.base, "--max-steps", str(args.steps), "--lr", "3e-4", "--min-lr", "3e-5",
                   "--warmup-steps", "50", "--seed", str(seed), "-q"] + (["--sounding"] if arm == "snd" else [])
            print(" ".join(cmd[2:]), flush=True)
            procs.append(subprocess.Popen(cmd))
        for p in procs:
            if p.wait():
                raise SystemExit(f"training failed ({p.returncode})")


def evaluate(args) -> None:
    Path(args.results).mkdir(parents=True, exist_ok=True)
    for seed in args.train_seeds:
        for name, flags in args.settings.items():
            for k in args.sample_seeds:
                procs = []
                for arm in ARMS:
                    js = Path(args.results) / f"{arm}-s{seed}-test-{name}-k{k}.json"
                    if js.is_file():
                        continue
                    cmd = [sys.executable, "-m", "midigen", "evaluate", "--checkpoint", str(run_dir(args, arm, seed)),
                           "--data", args.data, "--split", "test", "--samples", "38", "--prompt-beats", "8",
                           *flags, "--seed", str(k), "--json", str(js), "-q"]
                    print(" ".join(cmd[2:]), flush=True)
                    procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
                for p in procs:
                    p.wait()


def voice_joins(score, steps_per_beat: int) -> dict:
    """Each part's note-to-note joins, classified (see the module docstring); notes ending after
    the last onset are left out (a cut continuation's last chord)."""
    q = score.ticks_per_quarter / steps_per_beat
    on, end = np.round(score.start / q).astype(int), np.round(score.end / q).astype(int)
    onsets, last = set(on.tolist()), on.max()
    c = {"exact": 0, "skip": 0, "missing": 0, "overlap": 0}
    for p in np.unique(score.part):
        m = score.part == p
        order = np.lexsort((end[m], on[m]))
        o, e = on[m][order], end[m][order]
        for i in range(len(o) - 1):
            if o[i + 1] == o[i] or e[i] > last:  # (a chord within the part; the final chord)
                continue
            d = o[i + 1] - e[i]
            c["exact" if d == 0 else "overlap" if d < 0 else "missing" if e[i] in onsets else "skip"] += 1
    return c


def joins(args) -> None:
    import torch

    from midigen.checkpoint import load_model
    from midigen.data import PreparedCorpus
    from midigen.encoding import Tokens
    from midigen.evaluate import after_beats
    from midigen.generate import as_prompt, generate

    torch.set_num_threads(1)
    out = Path(args.results) / "joins.json"
    res = json.loads(out.read_text()) if out.is_file() else {}
    corpus = PreparedCorpus(args.data, "test")
    for seed in args.train_seeds:
        for arm in ARMS:
            model, tok, _ = load_model(run_dir(args, arm, seed))
            spb = tok.config.steps_per_beat
            for name, flags in args.settings.items():
                key = f"{arm}-s{seed}-{name}"
                if key in res:
                    continue
                top_p = float(flags[1]) if flags else None
                counts, zero_sd = [], 0
                for k in args.sample_seeds:
                    for i in range(len(corpus)):  # as evaluate: piece i's prompt, seed k + i
                        ids, steps = (np.asarray(a) for a in corpus.piece(i))
                        prompt = as_prompt(Tokens(ids, steps, tokenizer=tok), tok, 8.0)
                        n = 38 // len(corpus) + (i < 38 % len(corpus))
                        for t in generate(model, tok, prompt, num_samples=n, seed=k + i, top_p=top_p,
                                          max_new_tokens=len(ids) - len(prompt), min_length=len(ids)):
                            c = voice_joins(after_beats(tok.decode(t.ids), 8.0), spb)
                            counts.append(c)
                            zero_sd += c["skip"] + c["missing"] + c["overlap"] == 0
                total = {f: int(sum(c[f] for c in counts)) for f in counts[0]}
                res[key] = {**total, "continuations": len(counts), "without_a_bad_join": int(zero_sd)}
                print(key, res[key], flush=True)
                out.write_text(json.dumps(res, indent=1))
    real = []
    for i in range(len(corpus)):
        ids, _ = (np.asarray(a) for a in corpus.piece(i))
        real.append(voice_joins(after_beats(corpus.tokenizer.decode(ids), 8.0), corpus.tokenizer.config.steps_per_beat))
    res["data"] = {f: int(sum(c[f] for c in real)) for f in real[0]}
    res["data"]["continuations"] = len(real)
    res["data"]["without_a_bad_join"] = int(sum(c["skip"] + c["missing"] + c["overlap"] == 0 for c in real))
    out.write_text(json.dumps(res, indent=1))


def table(args) -> None:
    rows = []
    stats = None
    for seed in args.train_seeds:
        for name in args.settings:
            files = {arm: [Path(args.results) / f"{arm}-s{seed}-test-{name}-k{k}.json" for k in args.sample_seeds]
                     for arm in ARMS}
            if not all(f.is_file() for fs in files.values() for f in fs):
                print(f"(training seed {seed}, {name}: not every evaluation is there; left out)")
                continue
            per = {arm: [json.loads(f.read_text()) for f in fs] for arm, fs in files.items()}
            stats = stats or list(per["ctrl"][0]["statistics"])
            line = {"train_seed": seed, "setting": name}
            for arm in ARMS:
                line[f"{arm}/bits_per_note"] = per[arm][0]["likelihood"]["bits_per_note"]
                line[f"{arm}/loss"] = per[arm][0]["likelihood"]["loss"]
                for s in stats:
                    line[f"{arm}/{s}"] = [r["statistics"][s]["overlap"] for r in per[arm]]
            rows.append(line)
    print(f"{'setting':<8} {'statistic':<22} {'control':>14} {'sounding':>14} {'paired diff':>14}")
    for r in rows:
        print(f"{r['setting']:<8} {'bits/note (test)':<22} {r['ctrl/bits_per_note']:>14.3f} "
              f"{r['snd/bits_per_note']:>14.3f} {r['snd/bits_per_note'] - r['ctrl/bits_per_note']:>+14.3f}")
        for s in stats:
            a, b = np.array(r[f"ctrl/{s}"]), np.array(r[f"snd/{s}"])
            d = b - a
            print(f"{r['setting']:<8} {s:<22} {a.mean():>8.2f} ± {a.std(ddof=1) if len(a) > 1 else 0:.2f} "
                  f"{b.mean():>8.2f} ± {b.std(ddof=1) if len(b) > 1 else 0:.2f} "
                  f"{d.mean():>+8.2f} ± {d.std(ddof=1) if len(d) > 1 else 0:.2f}")
    Path(args.results, "table.json").write_text(json.dumps(rows, indent=1))
    if rows:
        print(markdown(rows, stats))


def markdown(rows: list[dict], stats: list[str]) -> str:
    """The overlaps as a markdown table: per setting, control and sounding (mean ± sd over the
    sampling seeds) and their paired difference; bits per note first."""
    def ms(a):
        a = np.asarray(a, float)
        return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" if len(a) > 1 else f"{a.mean():.2f}"

    head = "| statistic | " + " | ".join(f"{r['setting']}: control | {r['setting']}: sounding | {r['setting']}: "
                                         "paired diff" for r in rows) + " |"
    lines = [head, "|---|" + "---:|" * (3 * len(rows))]
    lines.append("| bits/note (test) | " + " | ".join(
        f"{r['ctrl/bits_per_note']:.3f} | {r['snd/bits_per_note']:.3f} | "
        f"{r['snd/bits_per_note'] - r['ctrl/bits_per_note']:+.3f}" for r in rows) + " |")
    for s in stats:
        cells = []
        for r in rows:
            a, b = np.array(r[f"ctrl/{s}"]), np.array(r[f"snd/{s}"])
            cells.append(f"{ms(a)} | {ms(b)} | {'+' if (b - a).mean() >= 0 else ''}{ms(b - a)}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| lowest overlap | " + " | ".join(
        f"{min(np.mean(r[f'ctrl/{s}']) for s in stats):.2f} | {min(np.mean(r[f'snd/{s}']) for s in stats):.2f} | "
        for r in rows) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=["train", "evaluate", "joins", "table", "all"], default="all")
    p.add_argument("--data", default="data/prepared/bach")
    p.add_argument("--base", default="runs/bach-recipe-long", help="the trained model both arms start from")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--train-seeds", default="1")
    p.add_argument("--sample-seeds", default="0,1,2")
    p.add_argument("--runs", default="runs")
    p.add_argument("--results", default="out/sounding")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"sampling settings, of {', '.join(SETTINGS)}")
    args = p.parse_args()
    args.train_seeds = [int(s) for s in args.train_seeds.split(",")]
    args.sample_seeds = [int(s) for s in args.sample_seeds.split(",")]
    args.settings = {name: SETTINGS[name] for name in args.settings.split(",")}
    for phase in ("train", "evaluate", "joins", "table"):
        if args.phase in (phase, "all"):
            globals()[phase](args)


if __name__ == "__main__":
    main()
