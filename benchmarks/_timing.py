"""Timing helpers shared by the benchmarks and the notebooks (notebook 02 times batching and
`prepare` with them). Import with the benchmarks folder on ``sys.path``::

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _timing import batches_per_second
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from time import perf_counter


def forever(batches):
    """Epoch after epoch: each ``iter()`` of a batching strategy is the next epoch."""
    while True:
        yield from batches


def batches_per_second(batches, n: int, repeats: int = 1, warmup: int = 3) -> float:
    """How many batches per second ``batches`` (a batching strategy) cuts: ``n`` batches in a row,
    the best of ``repeats`` such runs, after ``warmup`` batches (the first one also plans the
    epoch). Batches on a CUDA device are waited for."""
    stream = forever(batches)
    for _ in range(warmup):
        next(stream)
    best = float("inf")
    for _ in range(repeats):
        t0 = perf_counter()
        for _ in range(n):
            batch = next(stream)
        if batch["x"].is_cuda:
            import torch

            torch.cuda.synchronize()
        best = min(best, perf_counter() - t0)
    return n / best


def import_seconds(module: str) -> float:
    """Seconds a fresh Python takes to start and ``import module`` (what a spawned worker pays)."""
    t0 = perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return perf_counter() - t0


def best_prepare_seconds(files, out: Path, workers: int, repeats: int = 1) -> float:
    """The best `PrepareResult.seconds` of ``repeats`` runs of ``prepare(files)``, each into a
    fresh folder under ``out`` (deleted after), so that nothing comes from the cache."""
    from midigen.data.prepare import prepare

    best = float("inf")
    for rep in range(repeats):
        fresh_out = Path(out) / f"speed_workers{workers}_{rep}"
        r = prepare(files, fresh_out, workers=workers, progress=False)
        if r.encoded != len(files) or r.cached:
            raise RuntimeError(f"{fresh_out}: {r.cached} files came from a cache, {r.encoded} of {len(files)} encoded")
        best = min(best, r.seconds)
        shutil.rmtree(fresh_out)
    return best
