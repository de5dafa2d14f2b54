"""Looking inside the model: what each layer's attention attends to, and what its kNN memory finds.

`recording(model)` collects, for every forward pass inside it, each layer's attention weights
(computed from the very queries, keys and masks the layer attends with) and, in kNN layers, the
retrieved memory slots, their cosine scores and the gate; `attention_maps` is one pass of it.
`attention_distance`, `pca` and `cosine_similarity` summarise maps and embeddings for plots.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .gpt import GPT


@contextmanager
def recording(model: GPT) -> Iterator[list[list[dict]]]:
    """Record what every layer attends to during the forward passes inside the ``with`` block.

    Yields ``records``: ``records[layer]`` gets one dict per forward pass, with

    * ``"weights"`` (B, H, T, keys): attention weights of the local attention; keys are the XL
      memory's slots (if any), then the segment's tokens (with a cache: all cached ones);
      weights of empty memory slots and of future tokens are 0;
    * in kNN layers (when a memory is passed): ``"knn_slots"`` and ``"knn_scores"`` (B, H, T, k),
      the retrieved ring-buffer slots of ``memory.knn[layer]`` and their cosine similarities
      (-1e4: an empty slot), and ``"knn_gate"`` (B, H), the share of each head's output taken
      from the memory (0 for a row whose memory is empty).

    Recording costs an explicit (B, H, T, keys) attention matrix per layer; it is meant for
    looking, not for training.
    """
    attns = [block.attn for block in model.blocks]
    records = [[] for _ in attns]
    for attn, r in zip(attns, records, strict=True):
        attn.record = r
    try:
        yield records
    finally:
        for attn in attns:
            attn.record = None


@torch.no_grad()
def attention_maps(model: GPT, ids: torch.Tensor, steps: torch.Tensor | None = None,
                   **forward_kw: object) -> torch.Tensor:
    """Attention weights (B, n_layer, n_head, T, keys) of one forward pass of ``ids`` (B, T).

    ``weights[b, l, h, i, j]`` is how much query i of row b, in head h of layer l, attends to key
    j; every row sums to 1 and nothing lies above the causal diagonal. ``forward_kw`` go to the
    model (e.g. ``memory=``: then the keys start with the XL memory's slots). The model runs in
    eval mode (no dropout) and is put back in its mode afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with recording(model) as records:
            model(ids, steps, **forward_kw)
    finally:
        model.train(was_training)
    return torch.stack([r[-1]["weights"] for r in records], 1)


def attention_distance(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """How far back each head looks: the attention-weighted distance ``i - j`` from query ``i`` to
    key ``j``, averaged over the queries. ``maps``: (layers, heads, T, T) of one sequence (one row
    of `attention_maps`); returns (layers, heads), in tokens."""
    maps = np.asarray(maps)
    dist = np.arange(maps.shape[-2])[:, None] - np.arange(maps.shape[-1])[None, :]
    return (maps * dist).sum(-1).mean(-1)


def pca(rows: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The rows' coordinates on their first ``k`` principal components (rows x k), and the share of
    the variance each component explains (e.g. of the token embeddings in use)."""
    centred = rows - rows.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T, sv[:k] ** 2 / (sv**2).sum()


def cosine_similarity(rows: np.ndarray) -> np.ndarray:
    """The cosine similarity of every pair of rows (rows x rows), e.g. of embedding vectors."""
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return rows @ rows.T
