"""Transformer memory: training speed, resident memory and correctness, midigen against the peers.

One configuration for every model: vocabulary ``len(midigen.Tokenizer())`` (365), width 256, 4 layers,
4 heads, segment (block) 256, batch 8, fp32 on the CPU, one thread. Each model trains on the same
stream of consecutive segments (random tokens; per row one long "piece" whose time steps keep
rising), and every memory is carried from one segment to the next, as the ``contiguous`` batcher
feeds them in training.

Models (``--models`` picks some):

* ``midigen gpt``           `midigen.model.GPT`, the project's default (learned positions, beat/bar
  embeddings, tied head): the reference the targets are relative to.
* ``midigen gpt rotary``    the same with ``position="rotary"``: what the memory models are without
  their memories (they need rotary positions), so their own overhead can be read off.
* ``midigen xl``            `GPT`, ``GPTConfig(position="rotary", xl_memory=256)``.
* ``midigen knn``           ``GPTConfig(position="rotary", knn_layers=(3,), knn_capacity=2048, knn_topk=32)``.
* ``midigen xl+knn``        both.
* ``midigen knn faiss``     ``midigen knn`` with ``knn_search="faiss"`` (only when named in ``--models``).
* ``x-transformers``        ``TransformerWrapper(num_tokens=V, max_seq_len=256,
  attn_layers=Decoder(dim=256, depth=4, heads=4, rel_pos_bias=True))``, no memory.
* ``x-transformers xl``     the same with ``max_mem_len=256``, called with ``mems=`` and
  ``return_mems=True`` (Transformer-XL recurrence of each layer's input hidden states).
* ``lucidrains``            ``memorizing_transformers_pytorch.MemorizingTransformer(num_tokens=V,
  dim=256, depth=4, heads=4, dim_head=64, memorizing_layers=(99,))``: no valid memorizing layer,
  so no kNN memory (its baseline).
* ``lucidrains knn``        ``memorizing_layers=(4,)`` (its layers count from 1: the last layer, as
  midigen's ``knn_layers=(3,)``), ``max_knn_memories=2048``, ``num_retrieved_memories=32``; its
  memories live in a numpy memmap in a temporary folder outside the repository and in one faiss
  HNSW index per batch row (``faiss.omp_set_num_threads(1)``). ``pad_id=-100``: its default
  ``pad_id=0`` would leave token 0 out of the loss.

**Training speed**: forward, cross-entropy, backward and an AdamW step (lr 3e-4, weight decay
0.1) per segment. The memory models first run ``--fill`` untimed segments (default: enough to fill
a 2048-entry kNN memory), so that timing sees full memories; then, round-robin over the models
(noise on a shared machine hits all alike), ``--repeat`` times: ``--warmup`` untimed segments and
``--steps`` timed ones. Tokens/s are given by wall clock and by this process's CPU time; the ratios
compare the best repeat by CPU time (on a shared machine the wall clock also counts waiting for a
core).

**Resident memory**: each memory model (and ``midigen gpt`` as a control) trains
``--rss-segments`` (50) consecutive segments in a fresh subprocess; VmRSS from /proc/self/status
after every segment, shown after segments 1, 10, 25 and 50. Single readings move by tens of MiB
from one segment to the next (the allocator returns and takes back the large activation buffers),
so "flat" compares peaks: the highest RSS of segments 31-50 exceeds that of segments 11-30
(every memory full by then: XL after 1 segment, a 2048-entry kNN memory after 8) by less than
20 MiB, 1 MiB a segment: keeping each segment's entries instead of dropping them would add 4 MiB a
segment (midigen's kNN layer at batch 8) to 16 MiB (its XL layers), and the peak of the
no-memory control moves by up to ~10 MiB.

**Correctness** of the memory bookkeeping, the peers' known bugs, shown on their own code and on
midigen's, small and quick: (a) is the memory cleared when a new piece starts; (b) a full kNN
memory: oldest entries dropped, or everything wiped; (c) a capacity that is not a multiple of the
segment length: do retrieved keys come back with their own values.

Run from the repository root::

    .venv/bin/python benchmarks/memory.py --markdown

It sets ``OMP_NUM_THREADS=1`` and, where unset, ``OMP_WAIT_POLICY=PASSIVE`` before importing torch
(idle OpenMP workers sleep instead of spinning). Peers that are not installed are skipped with a
message; install them (not project dependencies) with::

    .venv/bin/pip install x-transformers
    .venv/bin/pip install --no-deps memorizing-transformers-pytorch einops-exts faiss-cpu

(``--no-deps``: it declares ``faiss-gpu``, a 1.2 GB wheel, and needs the undeclared
``einops-exts``; ``filelock``, ``joblib`` and ``einops`` must be present.) With the defaults it
takes about 10 minutes on one thread of a small, busy CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

MODELS = ["midigen gpt", "midigen gpt rotary", "midigen xl", "midigen knn", "midigen xl+knn",
          "x-transformers", "x-transformers xl", "lucidrains", "lucidrains knn"]
EXTRA_MODELS = ["midigen knn faiss"]  # on request (--models): knn_search="faiss"
RSS_MODELS = ["midigen gpt", "midigen xl", "midigen knn", "midigen xl+knn", "x-transformers xl",
              "lucidrains knn"]
REFERENCE = "midigen gpt"
BASELINE = {"midigen xl": "midigen gpt rotary", "midigen knn": "midigen gpt rotary",
            "midigen xl+knn": "midigen gpt rotary", "x-transformers xl": "x-transformers",
            "lucidrains knn": "lucidrains"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--seq", type=int, default=256, help="segment length (default 256)")
    parser.add_argument("--xl-memory", type=int, default=256, help="XL memory length (default 256)")
    parser.add_argument("--knn-capacity", type=int, default=2048, help="kNN memories per row (default 2048)")
    parser.add_argument("--knn-topk", type=int, default=32, help="retrieved memories per query (default 32)")
    parser.add_argument("--fill", type=int, default=None,
                        help="untimed segments of each memory model before timing (default: capacity / seq)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed segments per repeat (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed segments per repeat (default 10)")
    parser.add_argument("--repeat", type=int, default=2, help="repeats, round-robin (default 2)")
    parser.add_argument("--rss-segments", type=int, default=50, help="segments of the RSS runs (default 50; 0: skip)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS + EXTRA_MODELS))
    parser.add_argument("--no-checks", action="store_true", help="skip the correctness checks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)  # internal: one RSS run
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: see the docstring

import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _tables import print_table, ratio  # noqa: E402
from midigen import Tokenizer  # noqa: E402
from midigen.model.gpt import GPT, CausalSelfAttention, GPTConfig  # noqa: E402

try:
    import x_transformers
    from x_transformers import Decoder, TransformerWrapper
    _XT_ERROR = ""
except ImportError as _exc:
    x_transformers = None
    _XT_ERROR = str(_exc)

try:
    import faiss
    import memorizing_transformers_pytorch as mtp
    from memorizing_transformers_pytorch import MemorizingTransformer
    from memorizing_transformers_pytorch.knn_memory import KNNMemory

    faiss.omp_set_num_threads(1)  # faiss has its own OpenMP runtime
    _MT_ERROR = ""
except ImportError as _exc:
    mtp = None
    _MT_ERROR = str(_exc)

WIDTH, DEPTH, HEADS = 256, 4, 4


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def available(name: str) -> str:
    """'' if the model can run here, else why not."""
    if name.startswith("x-transformers") and x_transformers is None:
        return f"x-transformers not installed ({_XT_ERROR})"
    if name.startswith("lucidrains") and mtp is None:
        return f"memorizing-transformers-pytorch / faiss not installed ({_MT_ERROR})"
    return ""


# ----------------------------------------------------------------------------- data
def stream(vocab_size: int, batch: int, seq: int, segments: int, seed: int):
    """Token ids (batch, segments * seq + 1) and non-decreasing time steps (about one new step
    every 3 tokens), one long piece per row, cut into consecutive segments."""
    g = torch.Generator().manual_seed(seed)
    n = segments * seq + 1
    ids = torch.randint(0, vocab_size, (batch, n), generator=g)
    steps = torch.cumsum((torch.rand(batch, n, generator=g) < 1 / 3).long(), dim=1)
    return ids, steps


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    model: torch.nn.Module
    step: Callable[[], None]  # trains on the next segment, memories carried
    memory_bytes: Callable[[], int] = lambda: 0  # size of the memory state now
    memory: str = "-"  # what the memory is
    cleanup: Callable[[], None] = lambda: None
    segment: list = field(default_factory=lambda: [0])


def make_case(name: str, args, V: int, ids, steps, n_segments: int) -> Case:
    B, T = args.batch, args.seq
    torch.manual_seed(args.seed)
    seg = [0]

    def window():
        s = (seg[0] % n_segments) * T
        seg[0] += 1
        return ids[:, s:s + T], steps[:, s:s + T], ids[:, s + 1:s + T + 1]

    if name.startswith("midigen"):
        common = dict(vocab_size=V, block_size=T, n_layer=DEPTH, n_head=HEADS, n_embd=WIDTH, dropout=0.0)
        if name in ("midigen gpt", "midigen gpt rotary"):
            model = GPT(GPTConfig(position="rotary" if "rotary" in name else "learned", **common))
            memory, desc = None, "-"
        else:
            kw = {}
            if "xl" in name:
                kw["xl_memory"] = args.xl_memory
            if "knn" in name:
                kw.update(knn_layers=(DEPTH - 1,), knn_capacity=args.knn_capacity, knn_topk=args.knn_topk,
                          knn_search="faiss" if "faiss" in name else "exact")
            model = GPT(GPTConfig(position="rotary", **kw, **common))
            memory = model.new_memory(B)
            desc = " + ".join(([f"XL {args.xl_memory} x {DEPTH} layers"] if "xl" in name else [])
                              + ([f"kNN {args.knn_capacity} (layer 4), top-{args.knn_topk}"
                                  + (", faiss search" if "faiss" in name else "")] if "knn" in name else []))
        opt = model.optimizer(lr=3e-4, weight_decay=0.1)

        def step():
            x, s, y = window()
            if memory is None:
                _, loss = model(x, s, targets=y)
            else:
                _, loss = model(x, s, targets=y, memory=memory)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def mem_bytes():
            return sum(t.nbytes for t in memory.tensors().values()) if memory is not None else 0

        return Case(name, model.train(), step, mem_bytes, desc, segment=seg)

    if name.startswith("x-transformers"):
        xl = name.endswith("xl")
        model = TransformerWrapper(num_tokens=V, max_seq_len=T, max_mem_len=args.xl_memory if xl else 0,
                                   attn_layers=Decoder(dim=WIDTH, depth=DEPTH, heads=HEADS, rel_pos_bias=True))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
        mems = [None]

        def step():
            x, _, y = window()
            if xl:
                logits, mems[0] = model(x, mems=mems[0], return_mems=True)
            else:
                logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def mem_bytes():
            return sum(t.nbytes for t in mems[0]) if mems[0] else 0

        return Case(name, model.train(), step, mem_bytes,
                    f"XL {args.xl_memory} hidden states x {DEPTH} layers" if xl else "-", segment=seg)

    if name.startswith("lucidrains"):
        knn = name.endswith("knn")
        tmp = tempfile.mkdtemp(prefix="midigen-bench-knn-")  # outside the repository
        model = MemorizingTransformer(num_tokens=V, dim=WIDTH, depth=DEPTH, heads=HEADS, dim_head=WIDTH // HEADS,
                                      memorizing_layers=(DEPTH,) if knn else (99,),
                                      max_knn_memories=args.knn_capacity, num_retrieved_memories=args.knn_topk,
                                      knn_memories_directory=tmp, pad_id=-100)
        memories = model.create_knn_memories(batch_size=B) if knn else []
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))

        def step():
            x, _, y = window()
            loss = model(x, knn_memories=memories, labels=y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def mem_bytes():  # the memmap database (the faiss indices come on top)
            return sum(m.db.nbytes for m in memories)

        def cleanup():
            memories.clear()
            gc.collect()
            shutil.rmtree(tmp, ignore_errors=True)

        return Case(name, model.train(), step, mem_bytes,
                    f"kNN {args.knn_capacity} (layer 4, memmap + faiss HNSW), top-{args.knn_topk}" if knn else "-",
                    cleanup, segment=seg)
    raise ValueError(f"unknown model {name!r}")


# ----------------------------------------------------------------------------- speed
@dataclass
class Rates:
    wall: list
    cpu: list

    def best(self, basis: str = "cpu") -> float:
        return max(self.wall if basis == "wall" else self.cpu)


def bench_training(cases: list[Case], tokens: int, args) -> dict[str, Rates]:
    fill = args.fill if args.fill is not None else -(-args.knn_capacity // args.seq)
    for case in cases:
        if case.memory != "-":
            for _ in range(fill):
                case.step()
    rates = {c.name: Rates([], []) for c in cases}
    for _ in range(args.repeat):
        for case in cases:
            for _ in range(args.warmup):
                case.step()
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                case.step()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[case.name].wall.append(tokens * args.steps / wall)
            rates[case.name].cpu.append(tokens * args.steps / cpu)
    return rates


# ----------------------------------------------------------------------------- RSS
MARKS = (1, 10, 25, 50)


def rss_child(args) -> int:
    """One model, ``--rss-segments`` training segments; prints a JSON line of RSS figures (MiB):
    before and after building the model, and after every segment."""
    torch.set_num_threads(1)
    V = len(Tokenizer())
    n_segments = 16
    ids, steps = stream(V, args.batch, args.seq, n_segments, args.seed)
    before = rss_mib()
    case = make_case(args.rss_child, args, V, ids, steps, n_segments)
    out = {"before_model": before, "model": rss_mib(), "rss": []}
    for _ in range(args.rss_segments):
        case.step()
        gc.collect()
        out["rss"].append(rss_mib())
    out["memory_mib"] = case.memory_bytes() / 2**20
    case.cleanup()
    print("RSS " + json.dumps(out))
    return 0


def bench_rss(names: list[str], args) -> dict[str, dict]:
    results = {}
    for name in names:
        cmd = [sys.executable, __file__, "--rss-child", name, "--rss-segments", str(args.rss_segments),
               "--batch", str(args.batch), "--seq", str(args.seq), "--xl-memory", str(args.xl_memory),
               "--knn-capacity", str(args.knn_capacity), "--knn-topk", str(args.knn_topk), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RSS ")]
        if proc.returncode or not line:
            results[name] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            results[name] = json.loads(line[-1][4:])
    return results


# ----------------------------------------------------------------------------- correctness
def _unit(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


KINDS = ("right", "lost", "wrong", "nothing")


def _tally(out: dict, got, exact, found, lo: int, hi: int) -> None:
    """Sort the answers to the queries for entries lo..hi-1 (the newest ones, all of which should
    be in memory): ``right`` its own value; ``lost`` another entry's value because the key is no
    longer stored (wiped); ``wrong`` the key *is* stored (exact match found) but the value comes
    from another entry; ``nothing`` no answer at all."""
    want = torch.arange(lo, hi)
    g, e, f = got[lo:hi], exact[lo:hi], found[lo:hi]
    ok = f & (g == want)
    out["right"].append(int(ok.sum()))
    out["lost"].append(int((f & ~ok & ~e).sum()))
    out["wrong"].append(int((f & ~ok & e).sum()))
    out["nothing"].append(int((~f).sum()))


def _data(n: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return _unit(n, d, g), torch.arange(n, dtype=torch.float32)[:, None].expand(n, d)


def knn_store_midigen(capacity: int, seg: int, segments: int, d: int = 32, seed: int = 0) -> dict:
    """Write ``segments`` segments of ``seg`` keys (key i: a random unit vector; value i: all
    channels = i) into a midigen kNN memory through `Memory.write`; after each segment, query the
    newest ``capacity`` keys written (all that should be there) through `CausalSelfAttention.retrieve`
    (top-1) and sort the answers (see `_tally`)."""
    cfg = GPTConfig(vocab_size=16, block_size=seg, n_layer=1, n_head=1, n_embd=d, position="rotary", knn_layers=(0,),
                    knn_capacity=capacity, knn_topk=1)
    model = GPT(cfg)
    attn: CausalSelfAttention = model.blocks[0].attn
    mem = model.new_memory(1)
    keys, vals = _data(seg * segments, d, seed)
    out = {k: [] for k in (*KINDS, "size")}
    for s in range(segments):
        hi = (s + 1) * seg
        mem.write(0, keys[None, None, s * seg:hi], vals[None, None, s * seg:hi], torch.ones(1, seg, dtype=torch.bool))
        m = mem.knn[0]
        with torch.no_grad():
            score, idx = attn.retrieve(keys[None, None, :hi], m)  # (1, 1, hi, 1)
        slot = idx[0, 0, :, 0]
        _tally(out, m["v"][0, 0, slot, 0].long(), score[0, 0, :, 0] > 0.999, m["valid"][0, slot],
               max(0, hi - capacity), hi)
        out["size"].append(int(m["valid"].sum()))
    return out


def knn_store_lucidrains(capacity: int, seg: int, segments: int, d: int = 32, seed: int = 0) -> dict:
    """The same through the peer's own `KNNMemory` (faiss HNSW index + memmap database); "exact
    match found" asks its faiss index directly."""
    tmp = tempfile.mkdtemp(prefix="midigen-bench-knn-")
    try:
        mem = KNNMemory(dim=d, max_memories=capacity, num_indices=1,
                        memmap_filename=str(Path(tmp) / "db.memmap"), multiprocessing=False)
        keys, vals = _data(seg * segments, d, seed)
        out = {k: [] for k in (*KINDS, "size")}
        for s in range(segments):
            hi = (s + 1) * seg
            sl = slice(s * seg, hi)
            mem.add(torch.stack((keys[sl], vals[sl]), dim=1)[None])  # (1, seg, 2, d)
            kv, mask = mem.search(keys[None, :hi], 1, increment_hits=False, increment_age=False)  # (1, hi, 1, 2, d)
            index = mem.knns[0].index
            if index.ntotal:
                sim, _ = index.search(np.ascontiguousarray(keys[:hi].numpy()), 1)
                exact = torch.from_numpy(sim[:, 0] > 0.999)
            else:
                exact = torch.zeros(hi, dtype=torch.bool)
            _tally(out, kv[0, :, 0, 1, 0].long(), exact, mask[0, :, 0], max(0, hi - capacity), hi)
            out["size"].append(int(index.ntotal))
        del mem
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_reset_midigen(V: int, sos: int, seed: int) -> str:
    """3 segments of piece A in both rows, then a new piece in row 0 (reset=[True, False]): row 0's
    logits must equal those of a fresh memory, row 1's must still use its past."""
    torch.manual_seed(seed)
    T = 64
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=4, n_embd=64, position="rotary", xl_memory=T,
                          knn_layers=(1,), knn_capacity=4 * T, knn_topk=8)).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (2, 4 * T), generator=g)
    ids[0, 3 * T] = sos  # row 0: a new piece starts at segment 4
    st = torch.arange(4 * T).expand(2, -1) // 3
    mem = model.new_memory(2)
    with torch.no_grad():
        for s in range(3):
            model(ids[:, s * T:(s + 1) * T], st[:, s * T:(s + 1) * T], memory=mem)
        x, s4 = ids[:, 3 * T:], st[:, 3 * T:]
        carried, _ = model(x, s4, memory=mem, reset=torch.tensor([True, False]))
        fresh, _ = model(x, s4, memory=model.new_memory(2))
    d0 = (carried[0] - fresh[0]).abs().max().item()
    d1 = (carried[1] - fresh[1]).abs().max().item()
    return (f"`reset=[True, False]` at the new piece: row 0 = fresh memory (max abs. logit difference {d0:.1e}); "
            f"row 1 keeps its past (differs by {d1:.2f}): cleared, per row")


def check_reset_lucidrains(V: int, sos: int, seed: int) -> str:
    """``clear_memories_on_sos_token_id=sos``: feed 3 segments, then one that starts with <sos>."""
    tmp = tempfile.mkdtemp(prefix="midigen-bench-knn-")
    try:
        torch.manual_seed(seed)
        T = 64
        model = MemorizingTransformer(num_tokens=V, dim=64, depth=2, heads=4, dim_head=16, memorizing_layers=(2,),
                                      max_knn_memories=8 * T, knn_memories_directory=tmp,
                                      clear_memories_on_sos_token_id=sos).eval()
        memories = model.create_knn_memories(batch_size=2)
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, V, (2, 4 * T), generator=g)
        ids[ids == sos] = sos + 1
        ids[:, 3 * T] = sos
        with torch.no_grad():
            for s in range(4):
                model(ids[:, s * T:(s + 1) * T], knn_memories=memories)
        after = [int(k.index.ntotal) for k in memories[0].knns]
        # make <sos>'s embedding equal to the token id, so that its (embedding == id) test matches
        with torch.no_grad():
            model.token_emb.weight[sos] = float(sos)
            try:
                model(ids[:, 3 * T:], knn_memories=memories)
                crash = "no error"
            except NameError as e:
                crash = f"NameError: {e}"
        memories.clear()
        gc.collect()
        return (f"<sos> at the start of segment 4 in both rows: memory sizes after it {after} "
                f"(4 x {T}: never cleared, the test compares embeddings with the id, "
                f"memorizing_transformers_pytorch.py:451/461/433); forced to match: {crash} (line 440)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_reset_xt(V: int, seed: int) -> str:
    torch.manual_seed(seed)
    T = 64
    model = TransformerWrapper(num_tokens=V, max_seq_len=T, max_mem_len=T,
                               attn_layers=Decoder(dim=64, depth=2, heads=4, rel_pos_bias=True)).eval()
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, V, (1, T), generator=g), torch.randint(0, V, (1, T), generator=g)
    with torch.no_grad():
        _, mems = model(a, return_mems=True)
        carried = model(b, mems=mems)
        fresh = model(b)
    d = (carried - fresh).abs().max().item()
    return (f"no reset input: piece B's first segment after piece A's mems differs from a fresh start by "
            f"max abs. logit difference {d:.2f} (A leaks into B unless the loader drops the mems or passes `mem_masks`; "
            f"x_transformers.py:4692 concatenates whatever it is given)")


def describe_store(r: dict, capacity: int) -> str:
    j = lambda xs: ",".join(str(x) for x in xs)  # noqa: E731
    tot = {k: sum(r[k]) for k in KINDS}
    asked = sum(tot.values())
    verdict = "all right" if tot["right"] == asked else "BUG"
    return (f"{verdict}: of {asked} queries for the newest entries (up to {capacity}) over "
            f"{len(r['size'])} segments, right {tot['right']}, lost to a wipe {tot['lost']}, wrong value for a "
            f"stored key {tot['wrong']}, no answer {tot['nothing']}; right per segment {j(r['right'])}; "
            f"entries held {j(r['size'])}")


def run_checks(V: int, sos: int, seed: int) -> list[list[str]]:
    rows = []
    rows.append(["(a) new piece (reset / <sos>)", "midigen xl+knn", check_reset_midigen(V, sos, seed)])
    if mtp is not None:
        rows.append(["", "lucidrains knn", check_reset_lucidrains(V, sos, seed)])
    if x_transformers is not None:
        rows.append(["", "x-transformers xl", check_reset_xt(V, seed)])
    seg = 64
    for label, cap, segs in [("(b) full memory, capacity 4 x segment (256), 12 segments", 4 * seg, 12),
                             ("(c) capacity 2.5 x segment (160), 12 segments", 160, 12)]:
        rows.append([label, "midigen knn", describe_store(knn_store_midigen(cap, seg, segs, seed=seed), cap)])
        if mtp is not None:
            rows.append(["", "lucidrains knn", describe_store(knn_store_lucidrains(cap, seg, segs, seed=seed), cap)
                         + " (knn_memory.py:100-101 wipes the faiss index once over capacity and marks it untrained, "
                         "so :114-115 answers nothing for a segment; :93 counts entries but the wipe also drops the "
                         "new segment's count, so later wipes come late and the index's ids, restarting at 0, stop "
                         "matching the memmap ring's slots (:210 writes at a running offset, :252 reads id % capacity))"])
    if x_transformers is not None:
        rows.append(["(b) full XL memory", "x-transformers xl",
                     "keeps the last `max_mem_len` hidden states (x_transformers.py:4694 slices from the right): "
                     "oldest dropped, correct"])
    return rows


# ----------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> int:
    if args.rss_child:
        return rss_child(args)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    vocab = Tokenizer()
    V = len(vocab)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in (MODELS + EXTRA_MODELS):
            raise SystemExit(f"unknown model {n!r}; choose from {(MODELS + EXTRA_MODELS)}")
    skipped = {n: available(n) for n in names if available(n)}
    names = [n for n in names if n not in skipped]
    versions = [f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    if x_transformers is not None:
        versions.append(f"x-transformers {getattr(x_transformers, '__version__', '') or _version('x-transformers')}")
    if mtp is not None:
        versions.append(f"memorizing-transformers-pytorch {_version('memorizing-transformers-pytorch')}, "
                        f"faiss-cpu {faiss.__version__}")
    print(f"{', '.join(versions)}; {os.cpu_count()} CPUs, 1 thread (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}); "
          f"vocab {V}, width {WIDTH}, {DEPTH} layers, {HEADS} heads, segment {args.seq}, batch {args.batch}, fp32, CPU")
    for n, why in skipped.items():
        print(f"skipped {n}: {why}")

    # --- speed
    t0 = time.perf_counter()
    tokens = args.batch * args.seq
    n_segments = 16
    ids, steps = stream(V, args.batch, args.seq, n_segments, args.seed)
    cases = [make_case(n, args, V, ids, steps, n_segments) for n in names]
    rates = bench_training(cases, tokens, args)
    ref = rates[REFERENCE].best() if REFERENCE in rates else None
    rows = []
    for c in cases:
        r = rates[c.name]
        base = rates.get(BASELINE.get(c.name, ""))
        rows.append([c.name, c.memory, f"{n_params(c.model):,}", f"{max(r.wall):,.0f}",
                     f"{statistics.median(r.wall):,.0f}", f"{r.best():,.0f}", f"{1000 * tokens / r.best():.0f}",
                     ratio(r.best(), ref), ratio(r.best(), base.best()) if base else "",
                     f"{c.memory_bytes() / 2**20:.1f}" if c.memory != "-" else ""])
    fill = args.fill if args.fill is not None else -(-args.knn_capacity // args.seq)
    print_table(f"Training over consecutive segments: batch {args.batch} x {args.seq} tokens, forward + backward + "
                f"AdamW, memories carried; memory models {fill} untimed segments first, then {args.steps} timed "
                f"segments x {args.repeat} repeats (after {args.warmup} untimed each), round-robin",
                ["model", "memory", "params", "tokens/s wall (best)", "wall (median)", "tokens/s CPU (best)",
                 "ms/segment (CPU)", f"vs {REFERENCE} (CPU)", "vs own no-memory baseline (CPU)",
                 "memory state MiB"], rows, args.markdown, left=2)
    print(f"\n(speed: {time.perf_counter() - t0:.0f} s; baselines: midigen memory models vs `midigen gpt rotary`, "
          "x-transformers xl vs `x-transformers`, lucidrains knn vs `lucidrains`; lucidrains' memory state is "
          "its memmap database only, its faiss indices come on top)")
    for c in cases:
        c.cleanup()
    del cases
    gc.collect()

    # --- targets
    checks = [(f"{n} >= 0.8x {REFERENCE}", n) for n in ("midigen xl", "midigen knn") if n in rates]
    print("\n**Targets** (tokens/s by CPU time, best repeat)\n" if args.markdown else "\nTargets (CPU time):")
    for label, n in checks:
        if ref:
            r = rates[n].best() / ref
            print(f"- {label}: {r:.2f}x, {'met' if r >= 0.8 else 'NOT met'}")

    # --- RSS
    if args.rss_segments:
        t0 = time.perf_counter()
        rss_names = [n for n in RSS_MODELS if n in names]
        res = bench_rss(rss_names, args)
        N = args.rss_segments
        marks = sorted(set(m for m in MARKS if m <= N) | {N})
        start = min(10, N // 2)
        half = start + (N - start) // 2  # windows: segments start+1..half and half+1..N
        rows, flat_all = [], True
        for n in rss_names:
            r = res[n]
            if "error" in r:
                rows.append([n, "error: " + r["error"]] + [""] * (len(marks) + 4))
                continue
            rss = r["rss"]
            a, z = max(rss[start:half]), max(rss[half:])
            flat = z - a < 20.0
            if n.startswith("midigen") and n != "midigen gpt":
                flat_all &= flat
            rows.append([n, f"{r['model']:.0f}"] + [f"{rss[k - 1]:.0f}" for k in marks]
                        + [f"{a:.0f}", f"{z:.0f}", f"{z - a:+.1f}", f"{r['memory_mib']:.1f}", "yes" if flat else "NO"])
        print_table(f"Resident memory (VmRSS, MiB) over {N} consecutive training segments, one fresh process per "
                    "model (RSS after the segment; peaks over two windows after every memory is full)",
                    ["model", "after building"] + [f"segment {k}" for k in marks]
                    + [f"peak {start + 1}-{half}", f"peak {half + 1}-{N}", "growth of the peak", "memory state MiB", "flat"],
                    rows, args.markdown)
        print(f"\n(RSS: {time.perf_counter() - t0:.0f} s; flat: the peak RSS of segments {half + 1}-{N} exceeds that "
              f"of segments {start + 1}-{half} by less than 20 MiB; `midigen gpt` is the control without memory)")
        print(f"- midigen's memory models' RSS flat once the memory is full: {'met' if flat_all else 'NOT met'}")

    # --- correctness
    if not args.no_checks:
        t0 = time.perf_counter()
        rows = run_checks(V, vocab.sos_id, args.seed)
        print_table("Memory bookkeeping: the peers' known bugs, same case on midigen (keys: random unit vectors, "
                    "value i = i; every key ever written is searched, top-1; segment 64)",
                    ["case", "implementation", "what happens"], rows, args.markdown, left=3)
        print(f"\n(checks: {time.perf_counter() - t0:.0f} s)")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main(ARGS))
