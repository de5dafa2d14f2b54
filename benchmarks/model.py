"""The GPT's speed: training and generation tokens/s, midigen against x-transformers.

One configuration for every model (the project's default): vocabulary ``len(midigen.Tokenizer())``
(365), width 256, 4 layers, 4 heads, dropout 0, fp32 on the CPU.

**Training** (batch 8 x sequence 256; forward, cross-entropy, backward and an AdamW step), in
tokens/s, on the same random token batch for every model:

* ``midigen GPT``            `midigen.model.GPT` as trained: learned positions, musical (beat and
  bar) embeddings from a non-decreasing array of time steps, tied input/output embeddings,
  AdamW from ``GPT.optimizer``.
* ``midigen musical=False``  the same without the beat and bar embeddings.
* ``midigen rotary``         ``position="rotary"`` (musical embeddings on).
* ``x-transformers``         ``TransformerWrapper(num_tokens=V, max_seq_len=256,
  attn_layers=Decoder(dim=256, depth=4, heads=4))``, its defaults (untied output head, learned
  absolute positions, einsum attention), loss ``F.cross_entropy`` on its logits,
  ``torch.optim.AdamW``.
* ``x-transformers flash``   the same with ``Decoder(..., attn_flash=True)`` (attention through
  ``F.scaled_dot_product_attention``, as midigen does).

Each model gets ``--warmup`` untimed steps, then ``--steps`` timed steps; this is repeated
``--repeat`` times round-robin over the models (so that noise on a shared machine hits all of
them alike). The table gives the best and the median repeat by wall clock and the best by this
process's CPU time (``time.process_time``); the ratio column compares the best by CPU time when
``--threads 1`` (on a shared machine the wall clock also counts the time spent waiting for a core,
which CPU time leaves out) and the best by wall clock with more threads (where CPU time adds up
the threads).

**Generation** of ``--new-tokens`` (512) tokens from a one-token prompt, batch 1, with untrained
models (speed does not depend on the weights) whose context holds the whole piece
(``block_size``/``max_seq_len`` = new tokens + 1, so midigen's window never slides):

* ``midigen generate (KV cache)``  ``midigen.generate.generate(model, vocab, max_new_tokens=512,
  min_length=513, seed=...)``: KV-cached and grammar-constrained, as users run it (``min_length``
  keeps an untrained model from ending the piece early, so every run makes all 512 tokens).
* ``midigen generate, top_p=0.9``  the same with nucleus filtering (a sort per token).
* ``midigen uncached``  the baseline: a plain loop that re-runs the whole prefix through the model
  for every token, with the same grammar mask (``tokenizer.grammar``) and
  time-step tracking; written here, it is not part of midigen.
* ``x-transformers cached``  ``AutoregressiveWrapper(model).generate(prompt, seq_len=512,
  cache_kv=True)`` with its default sampling (top-k, 10% of the vocabulary; no grammar).
* ``x-transformers uncached``  the same with ``cache_kv=False``.

Cached rows are the best of ``--gen-repeat`` runs, uncached rows of ``--uncached-repeat`` runs
(default 1: they take seconds each), by wall clock and by CPU time; the ratios compare tokens/s
on the same basis as the training table's.

**On a GPU** (``torch.cuda.is_available()``) the script also measures bf16 (autocast) training
throughput of midigen's GPT and x-transformers flash and the model FLOPs utilisation:
(6 N + 12 L d T) x tokens/s over the GPU's peak dense bf16 FLOP/s, N the parameters (embeddings
included), L layers, d width, T sequence length (the second term is attention's, PaLM's
convention, counting the full T x T score matrix). The peak comes from the GPU's name for a few
known GPUs, or ``--peak-tflops``. Without a GPU this part is skipped with a message.

Run from the repository root::

    .venv/bin/python benchmarks/model.py                 # 1 thread
    .venv/bin/python benchmarks/model.py --threads 2 --markdown
    python3 benchmarks/model.py --gpu-only               # only the bf16 GPU table (seconds on a GPU)

The script sets ``OMP_NUM_THREADS`` (and MKL/OpenBLAS) to ``--threads`` and, where unset,
``OMP_WAIT_POLICY=PASSIVE`` before it imports torch (idle OpenMP workers sleep instead of
spinning, which on a small shared machine otherwise steals the cores the timed thread needs),
then ``torch.set_num_threads(--threads)`` and one inter-op thread. With the defaults it takes
about 5-8 minutes on one thread of a small CPU, most of it training steps and the uncached rows.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads (default 1)")
    parser.add_argument("--batch", type=int, default=8, help="training batch size (default 8)")
    parser.add_argument("--seq", type=int, default=256, help="training sequence length (default 256)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per repeat (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps per repeat (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="training repeats, round-robin (default 3)")
    parser.add_argument("--new-tokens", type=int, default=512, help="tokens to generate (default 512)")
    parser.add_argument("--gen-repeat", type=int, default=5, help="runs of each cached generator (default 5)")
    parser.add_argument("--uncached-repeat", type=int, default=1,
                        help="runs of each uncached generator (default 1; 0 leaves them out)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's peak dense bf16 TFLOP/s, for MFU (default: known from its name)")
    parser.add_argument("--gpu-only", action="store_true",
                        help="only the bf16 GPU section (skips the CPU training and generation tables)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
_threads = str(ARGS.threads if ARGS else 1)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = _threads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: see the docstring

import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _tables import print_table, ratio  # noqa: E402
from midigen import Tokenizer  # noqa: E402
from midigen.encoding.grammar import C_START  # noqa: E402
from midigen.generate import generate  # noqa: E402
from midigen.model.gpt import GPT, GPTConfig  # noqa: E402

try:
    import x_transformers
    from x_transformers import AutoregressiveWrapper, Decoder, TransformerWrapper
except ImportError as _exc:  # the midigen rows still run
    x_transformers = None
    _XT_ERROR = str(_exc)

WIDTH, DEPTH, HEADS = 256, 4, 4
REFERENCE = "x-transformers"  # training ratios are relative to this row


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


# ----------------------------------------------------------------------------- models
def midigen_model(vocab_size: int, block_size: int, **overrides) -> GPT:
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=DEPTH, n_head=HEADS,
                    n_embd=WIDTH, dropout=0.0, **overrides)
    return GPT(cfg)


def xt_model(vocab_size: int, max_seq_len: int, flash: bool = False):
    extra = {"attn_flash": True} if flash else {}
    return TransformerWrapper(num_tokens=vocab_size, max_seq_len=max_seq_len,
                              attn_layers=Decoder(dim=WIDTH, depth=DEPTH, heads=HEADS, **extra))


def random_batch(vocab_size: int, batch: int, seq: int, seed: int):
    """Token ids (batch, seq + 1) and non-decreasing time steps: about one new step every 3
    tokens, so a 256-token window spans ~85 steps, ~5 bars of 16 steps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, seq + 1), generator=g)
    steps = torch.cumsum((torch.rand(batch, seq + 1, generator=g) < 1 / 3).long(), dim=1)
    return ids, steps


# ----------------------------------------------------------------------------- training
@dataclass
class TrainCase:
    name: str
    model: torch.nn.Module
    step: Callable[[], None]  # one forward + backward + optimizer step


def midigen_case(name: str, model: GPT, ids, steps, device_type: str = "cpu") -> TrainCase:
    opt = model.optimizer(lr=3e-4, weight_decay=0.1, device_type=device_type)  # fused on CUDA
    x, s, y = ids[:, :-1], steps[:, :-1], ids[:, 1:]

    def step():
        _, loss = model(x, s, targets=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return TrainCase(name, model, step)


def xt_case(name: str, model, ids, device_type: str = "cpu") -> TrainCase:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95),
                            fused=device_type == "cuda")
    x, y = ids[:, :-1], ids[:, 1:]

    def step():
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return TrainCase(name, model, step)


def train_cases(vocab_size: int, batch: int, seq: int, seed: int) -> list[TrainCase]:
    ids, steps = random_batch(vocab_size, batch, seq, seed)
    cases = []
    for name, overrides in [("midigen GPT", {}), ("midigen musical=False", {"musical": False}),
                            ("midigen rotary", {"position": "rotary"})]:
        torch.manual_seed(seed)
        cases.append(midigen_case(name, midigen_model(vocab_size, seq, **overrides), ids, steps))
    if x_transformers is not None:
        for name, flash in [(REFERENCE, False), (f"{REFERENCE} flash", True)]:
            torch.manual_seed(seed)
            cases.append(xt_case(name, xt_model(vocab_size, seq, flash), ids))
    for case in cases:
        case.model.train()
    return cases


@dataclass
class Rates:
    """tokens/s of each repeat, by wall-clock time and by this process's CPU time."""

    wall: list[float]
    cpu: list[float]

    def best(self, basis: str) -> float:
        return max(self.wall if basis == "wall" else self.cpu)


def bench_training(cases: list[TrainCase], tokens_per_step: int, steps: int, warmup: int,
                   repeat: int, sync: Callable[[], None] = lambda: None) -> dict[str, Rates]:
    """tokens/s of every repeat, per case (round-robin over the cases)."""
    rates = {c.name: Rates([], []) for c in cases}
    for _ in range(repeat):
        for case in cases:
            for _ in range(warmup):
                case.step()
            sync()
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                case.step()
            sync()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[case.name].wall.append(tokens_per_step * steps / wall)
            rates[case.name].cpu.append(tokens_per_step * steps / cpu)
    return rates


# ----------------------------------------------------------------------------- generation
@torch.no_grad()
def uncached_generate(model: GPT, vocab: Tokenizer, max_new_tokens: int, seed: int) -> np.ndarray:
    """The baseline: every new token re-runs the whole sequence so far through the model (no KV
    cache). Same sampling work as `generate`'s defaults: temperature 1, the grammar mask, time
    steps tracked from the gaps for the musical embeddings; ``<eos>`` is masked so that all
    ``max_new_tokens`` are made, as with ``min_length`` in the cached runs."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    g = vocab.grammar  # <eos> masked throughout: min_length beyond the run
    ids, steps = [vocab.sos_id], [0]
    ctx = int(g.next_ctx[C_START, vocab.sos_id])
    step, has_instr = 0, False
    for _ in range(max_new_tokens):
        x = torch.tensor([ids])
        s = torch.tensor([steps])
        logits, _ = model(x, s)
        logits = logits[0, -1].float()
        allowed = g.allowed[ctx] & ~g.has_eos
        if not has_instr:
            allowed = allowed & ~g.needs_instrument
        logits = logits.masked_fill(~torch.from_numpy(allowed), float("-inf"))
        tok = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
        ids.append(tok)
        steps.append(step)
        step += int(g.advance[ctx, tok])
        ctx = int(g.next_ctx[ctx, tok])
        has_instr |= bool(g.gives_instrument[tok])
    return np.array(ids)


@dataclass
class GenRow:
    name: str
    params: int
    new_tokens: int
    seconds: float  # best run, wall clock
    cpu_seconds: float  # best run, CPU time of this process
    runs: int

    def rate(self, basis: str) -> float:
        return self.new_tokens / (self.seconds if basis == "wall" else self.cpu_seconds)


def time_once(fn: Callable[[], int]) -> tuple[float, float, int]:
    """Wall and CPU seconds of one call of ``fn``, which returns the new tokens it made."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    made = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, made


def bench_generation(vocab: Tokenizer, new_tokens: int, gen_repeat: int, uncached_repeat: int,
                     seed: int) -> list[GenRow]:
    V, ctx_len = len(vocab), new_tokens + 1
    torch.manual_seed(seed)
    model = midigen_model(V, ctx_len).eval()

    def midigen_cached(**kw):
        def run(r: int) -> int:
            out = generate(model, vocab, num_samples=1, max_new_tokens=new_tokens,
                           min_length=new_tokens + 1, seed=seed + r, **kw)
            return len(out[0]) - 1  # minus the <sos> prompt
        return run

    def midigen_uncached(r: int) -> int:
        return len(uncached_generate(model, vocab, new_tokens, seed + r)) - 1

    # `midigen generate --int8`: int8 dynamic quantisation of the Linear layers (CPU sampling)
    from midigen.generate import quantize_for_cpu

    q8 = quantize_for_cpu(model)

    def midigen_int8(r: int) -> int:
        out = generate(q8, vocab, num_samples=1, max_new_tokens=new_tokens, min_length=new_tokens + 1, seed=seed + r)
        return len(out[0]) - 1

    # (name, params, run(seed) -> new tokens, cached?)
    runners = [("midigen generate (KV cache)", n_params(model), midigen_cached(), True),
               ("midigen generate, top_p=0.9", n_params(model), midigen_cached(top_p=0.9), True),
               ("midigen generate --int8 (KV cache)", n_params(model), midigen_int8, True),
               ("midigen uncached (baseline)", n_params(model), midigen_uncached, False)]
    if x_transformers is not None:
        torch.manual_seed(seed)
        xt = xt_model(V, ctx_len).eval()
        wrapper = AutoregressiveWrapper(xt)
        prompt = torch.full((1, 1), vocab.sos_id, dtype=torch.long)

        def xt_run(cache_kv: bool):
            def run(r: int) -> int:
                torch.manual_seed(seed + r)
                with torch.no_grad():
                    out = wrapper.generate(prompt, seq_len=new_tokens, cache_kv=cache_kv)
                return out.shape[-1]
            return run

        runners += [("x-transformers cached", n_params(xt), xt_run(True), True),
                    ("x-transformers uncached", n_params(xt), xt_run(False), False)]

    # A short untimed run of each cached generator as warm-up, then the cached generators
    # round-robin (noise on a shared machine hits all alike), then the slow uncached ones.
    generate(model, vocab, max_new_tokens=16, seed=seed)
    for name, _, run, cached in runners:
        if cached:
            run(0)
    times: dict[str, list[tuple[float, float, int]]] = {name: [] for name, *_ in runners}
    for r in range(gen_repeat):
        for name, _, run, cached in runners:
            if cached:
                times[name].append(time_once(lambda: run(r)))
    for name, _, run, cached in runners:
        if not cached:
            times[name] += [time_once(lambda: run(r)) for r in range(uncached_repeat)]
    rows = []
    for name, params, _, cached in runners:
        if times[name]:
            runs = times[name]
            rows.append(GenRow(name, params, runs[0][2], min(t[0] for t in runs), min(t[1] for t in runs),
                               len(runs)))
    return rows


# ----------------------------------------------------------------------------- GPU, bf16
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10": 125.0, "4090": 165.0, "3090": 71.0, "V100": 125.0}  # dense, no sparsity


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            if key == "H100" and "PCIe" in device_name:
                return 756.0
            return value
    return None


def flops_per_token(n: int, seq: int) -> float:
    """Training FLOPs per token: 6 N for the matmuls with the weights (forward 2, backward 4),
    plus 12 L d T for attention's scores and weighted sum (PaLM's convention)."""
    return 6 * n + 12 * DEPTH * WIDTH * seq


def bench_bf16(device: str, vocab_size: int, args) -> list[list[str]]:
    """bf16-autocast training tokens/s and MFU on ``device`` (for a GPU; runs on any device)."""
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
        sync = torch.cuda.synchronize
    else:
        name, sync = platform.processor() or "cpu", (lambda: None)
    peak = peak_tflops(name, args.peak_tflops)
    dev_type = device.split(":")[0]
    rows = []
    for batch in (args.batch, 64):
        ids, steps = random_batch(vocab_size, batch, args.seq, args.seed)
        ids, steps = ids.to(device), steps.to(device)
        cases = []
        torch.manual_seed(args.seed)
        m = midigen_model(vocab_size, args.seq).to(device)
        cases.append(midigen_case("midigen GPT", m, ids, steps, dev_type))
        if x_transformers is not None:
            torch.manual_seed(args.seed)
            xt = xt_model(vocab_size, args.seq, True).to(device)
            cases.append(xt_case("x-transformers flash", xt, ids, dev_type))
        for case in cases:
            inner = case.step
            case.step = (lambda inner=inner: _autocast(dev_type, inner))
        rates = bench_training(cases, batch * args.seq, args.steps, args.warmup, args.repeat, sync)
        for case in cases:
            best = rates[case.name].best("wall")
            n = n_params(case.model)
            mfu = f"{flops_per_token(n, args.seq) * best / (peak * 1e12):.2%}" if peak else "-"
            rows.append([case.name, str(batch), f"{n:,}", f"{best:,.0f}", mfu])
    print(f"\nbf16 training on {name}: peak {peak if peak else 'unknown (use --peak-tflops)'} TFLOP/s")
    return rows


def _autocast(dev_type: str, fn):
    with torch.autocast(dev_type, dtype=torch.bfloat16) if dev_type in ("cuda", "cpu") else nullcontext():
        fn()


# ----------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    vocab = Tokenizer()
    V = len(vocab)
    xt_version = x_transformers.__version__ if x_transformers is not None and hasattr(x_transformers, "__version__") else None
    if x_transformers is not None and xt_version is None:
        from importlib.metadata import version
        xt_version = version("x-transformers")
    print(
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, x-transformers "
        f"{xt_version or 'not installed: ' + _XT_ERROR}; {torch.get_num_threads()} thread(s) "
        f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}); "
        f"vocab {V}, width {WIDTH}, {DEPTH} layers, {HEADS} heads, fp32, CPU"
    )

    if args.gpu_only:
        return gpu_section(V, args)

    # Ratios (and the targets) compare the best repeat by CPU time on one thread: on a shared
    # machine the wall clock also counts the time the process waits for a core. With more
    # threads CPU time adds up the threads' busy time, so the wall clock is compared instead.
    basis = "cpu" if args.threads == 1 else "wall"
    print(f"ratios compare the best repeat's tokens/s by {'CPU time' if basis == 'cpu' else 'wall clock'}")

    # --- training
    t0 = time.perf_counter()
    cases = train_cases(V, args.batch, args.seq, args.seed)
    rates = bench_training(cases, args.batch * args.seq, args.steps, args.warmup, args.repeat)
    ref = rates[REFERENCE].best(basis) if REFERENCE in rates else None
    tokens = args.batch * args.seq
    rows = []
    for case in cases:
        r = rates[case.name]
        rows.append([case.name, f"{n_params(case.model):,}", f"{max(r.wall):,.0f}",
                     f"{statistics.median(r.wall):,.0f}", f"{max(r.cpu):,.0f}",
                     f"{1000 * tokens / r.best(basis):.0f}", ratio(r.best(basis), ref)])
    print_table(
        f"Training: batch {args.batch} x {args.seq} tokens, forward + backward + AdamW, "
        f"{args.steps} timed steps x {args.repeat} repeats (after {args.warmup} warm-up steps each)",
        ["model", "params", "tokens/s wall (best)", "wall (median)", "tokens/s CPU (best)",
         f"ms/step ({basis})", f"vs {REFERENCE} ({basis})"],
        rows, args.markdown)
    print(f"\n(training: {time.perf_counter() - t0:.0f} s)")
    del cases

    # --- generation
    t0 = time.perf_counter()
    gen_rows = bench_generation(vocab, args.new_tokens, args.gen_repeat, args.uncached_repeat, args.seed)
    by = {r.name: r.rate(basis) for r in gen_rows}
    xt_cached, mg_uncached = by.get("x-transformers cached"), by.get("midigen uncached (baseline)")
    rows = [[r.name, f"{r.params:,}", str(r.new_tokens), f"{r.seconds:.3f}", f"{r.rate('wall'):,.0f}",
             f"{r.rate('cpu'):,.0f}", f"{1000 / r.rate(basis):.2f}", ratio(r.rate(basis), xt_cached),
             ratio(r.rate(basis), mg_uncached)]
            for r in gen_rows]
    print_table(
        f"Generation: {args.new_tokens} new tokens from a 1-token prompt, batch 1, context "
        f"{args.new_tokens + 1} (no window slide); best of {args.gen_repeat} (cached) / "
        f"{args.uncached_repeat} (uncached) runs",
        ["generator", "params", "new tokens", "seconds (wall)", "tokens/s wall", "tokens/s CPU",
         f"ms/token ({basis})", "vs x-transformers cached", "vs midigen uncached"],
        rows, args.markdown)
    print(f"\n(generation: {time.perf_counter() - t0:.0f} s)")

    # --- targets
    cached = by.get("midigen generate (KV cache)")
    mg_train = rates["midigen GPT"].best(basis)
    checks = [
        ("training: midigen GPT >= x-transformers", mg_train, ref, 1.0),
        ("generation: midigen cached >= 2x x-transformers cached", cached, xt_cached, 2.0),
        ("generation: midigen cached >= 20x midigen uncached", cached, mg_uncached, 20.0),
    ]
    print(f"\nTargets ({basis}):" if not args.markdown else f"\n**Targets** ({basis})\n")
    for label, a, b, target in checks:
        if a and b:
            verdict = "met" if a / b >= target else "NOT met"
            print(f"- {label}: {a / b:.2f}x, {verdict}")
        else:
            print(f"- {label}: not measured")

    return gpu_section(V, args)


def gpu_section(V: int, args: argparse.Namespace) -> int:
    if torch.cuda.is_available():
        rows = bench_bf16("cuda", V, args)
        print_table("bf16 (autocast) training on the GPU, sequence "
                    f"{args.seq}; MFU = (6 N + 12 L d T) x tokens/s / peak",
                    ["model", "batch", "params", "tokens/s", "MFU"], rows, args.markdown)
    else:
        print("\nGPU: torch.cuda.is_available() is False: bf16 training throughput and MFU skipped.")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
