"""The memory stores of a memory model (see `midigen.model.gpt`): each layer's XL memory (the keys
and values of the last tokens), the kNN ring buffers, and the kNN search over them.

The model that reads and writes them is the one `GPT` (gpt.py), whose config switches the memories
on (``xl_memory``, ``knn_layers``); `GPT.new_memory` makes the `Memory` of a batch.

**kNN search.** Keys are stored L2-normalised, as in the Memorizing Transformers paper; each query
retrieves its ``knn_topk`` most similar keys by exact search: one batched matmul and a top-k on
the model's device (`retrieve`), or, with ``knn_search="faiss"``, a faiss index per row and head,
for memories too large for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .gpt import GPTConfig

    Device = torch.device | str | None
    Scratch = tuple["Memory", int] | None  # (memory, layer): lends reusable work buffers


class Memory:
    """The memories of a batch: per layer XL keys/values and kNN keys/values with validity.

    Shapes: XL ``k``/``v`` (B, H, M, hs) and ``valid`` (B, M), newest last; kNN ``k``/``v``
    (B, H, C, hs) (each head's memories contiguous: the search is one plain batched matmul),
    ``valid`` (B, C) and the ring buffer's write position ``ptr`` (B,). ``scratch`` holds the kNN
    layers' work buffers, reused from segment to segment (allocating ~70 MB afresh each time
    costs more than the search's arithmetic on a CPU).
    """

    def __init__(self, config: GPTConfig, batch_size: int, device: Device = None,
                 dtype: torch.dtype = torch.float32):
        c = config
        hs = c.n_embd // c.n_head
        B, H = batch_size, c.n_head
        self.batch_size = B
        self.xl = []
        for _ in range(c.n_layer):
            if c.xl_memory:
                z = torch.zeros(B, H, c.xl_memory, hs, device=device, dtype=dtype)
                valid = torch.zeros(B, c.xl_memory, dtype=torch.bool, device=device)
                self.xl.append({"k": z, "v": z.clone(), "valid": valid})
            else:
                self.xl.append(None)
        self.knn = {}
        self.scratch: dict = {}
        for i in c.knn_layers:
            z = torch.zeros(B, H, c.knn_capacity, hs, device=device, dtype=dtype)
            valid = torch.zeros(B, c.knn_capacity, dtype=torch.bool, device=device)
            self.knn[i] = {"k": z, "v": z.clone(), "valid": valid,
                           "ptr": torch.zeros(B, dtype=torch.long, device=device)}

    def reset(self, rows: torch.Tensor | None) -> None:
        """Forget everything of the rows where ``rows`` is True (a new piece starts there)."""
        if rows is None or not bool(rows.any()):
            return
        rows = rows.to(torch.bool)
        for m in self.xl:
            if m is not None:
                m["valid"][rows] = False
        for m in self.knn.values():
            m["valid"][rows] = False
            m["ptr"][rows] = 0

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor) -> None:
        """Append a segment's (un-rotated) keys/values (B, H, T, hs) of ``layer``, detached."""
        k, v = k.detach(), v.detach()
        m = self.xl[layer]
        if m is not None:
            M = m["k"].shape[2]
            m["k"] = torch.cat([m["k"], k], 2)[:, :, -M:]
            m["v"] = torch.cat([m["v"], v], 2)[:, :, -M:]
            m["valid"] = torch.cat([m["valid"], valid], 1)[:, -M:]
        if layer in self.knn:
            m = self.knn[layer]
            C = m["k"].shape[2]
            T = k.shape[2]
            if T > C:  # only the newest C fit
                k, v, valid, T = k[:, :, -C:], v[:, :, -C:], valid[:, -C:], C
            slots = (m["ptr"][:, None] + torch.arange(T, device=k.device)) % C  # (B, T) ring positions
            rows = torch.arange(k.shape[0], device=k.device)[:, None]
            # through (B, C, H, hs) views: the written slots are (B, T), each a (H, hs) block
            m["k"].transpose(1, 2)[rows, slots] = F.normalize(k, dim=-1).transpose(1, 2).to(m["k"].dtype)
            m["v"].transpose(1, 2)[rows, slots] = v.transpose(1, 2).to(m["v"].dtype)
            m["valid"][rows, slots] = valid
            m["ptr"] = (m["ptr"] + T) % C

    def tensors(self) -> dict:
        """Everything as a flat dict of tensors (for checkpoints of a run in progress)."""
        out = {}
        for i, m in enumerate(self.xl):
            if m is not None:
                out.update({f"xl.{i}.{k}": t for k, t in m.items()})
        for i, m in self.knn.items():
            out.update({f"knn.{i}.{k}": t for k, t in m.items()})
        return out

    def load_tensors(self, tensors: dict) -> None:
        for key, t in tensors.items():
            kind, i, name = key.split(".")
            store = self.xl[int(i)] if kind == "xl" else self.knn[int(i)]
            if t.shape != store[name].shape:
                raise ValueError(f"memory tensor {key}: shape {tuple(t.shape)} does not fit this model's "
                                 f"{tuple(store[name].shape)} (saved by another version or config?)")
            store[name] = t.to(store[name].device)

    def buffer(self, layer: int, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: Device) -> torch.Tensor:
        """A work buffer of the kNN search, kept for the next segment."""
        t = self.scratch.get((layer, name))
        if t is None or t.shape != torch.Size(shape) or t.dtype != dtype or t.device != torch.device(device):
            t = self.scratch[(layer, name)] = torch.empty(shape, dtype=dtype, device=device)
        return t


def _buffer(scratch: Scratch, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: Device) -> torch.Tensor:
    """A work buffer: kept on the `Memory` for the next segment when ``scratch`` = (memory, layer)."""
    if scratch is None:
        return torch.empty(shape, dtype=dtype, device=device)
    memory, layer = scratch
    return memory.buffer(layer, name, shape, dtype, device)


def search(q: torch.Tensor, mem: dict, topk: int, scratch: Scratch = None) -> torch.Tensor:
    """Indices (B, H, T, k) of each query's top-k memories by cosine similarity: exact search.

    One batched matmul over all stored keys and a top-k, without autograd: no gradient needs
    the scores of the keys *not* chosen, so neither the (B, H, T, C) similarities nor the
    top-k are kept for the backward pass (`retrieve` recomputes the k chosen scores with
    gradients). ``scratch`` = (memory, layer) lends reusable work buffers.
    """
    B, H, T, hs = q.shape
    C = mem["k"].shape[2]
    k = min(topk, C)
    with torch.no_grad():
        qn = F.normalize(q, dim=-1).reshape(B * H, T, hs).to(mem["k"].dtype)
        out = _buffer(scratch, "sim", (B * H, T, C), qn.dtype, q.device)
        sim = torch.bmm(qn, mem["k"].view(B * H, C, hs).mT, out=out)
        if not bool(mem["valid"].all()):  # empty slots: below every cosine (which lie in [-1, 1])
            sim.view(B, H, T, C).masked_fill_(~mem["valid"][:, None, None, :], -1e4)
        values = _buffer(scratch, "top_values", (B * H, T, k), sim.dtype, q.device)
        idx = _buffer(scratch, "top_index", (B * H, T, k), torch.long, q.device)
        torch.topk(sim, k, dim=-1, sorted=False, out=(values, idx))
    return idx.view(B, H, T, k)


def search_faiss(q: torch.Tensor, mem: dict, topk: int) -> torch.Tensor:
    """`search` with faiss (``knn_search="faiss"``; ``pip install faiss-cpu``), on the CPU.

    For memories too large for the exact path's (B, H, T, C) similarity matrix (at batch 8,
    segment 256 and 4 heads, 64k memories per row would take 2 GB): faiss searches an
    inner-product index (``IndexFlatIP``) of each row's and head's valid memories block by
    block, in bounded memory. Same results as "exact" (it is exact search too); for small
    memories it costs about the same (2048 per row: 667 vs 660 ms per training segment).
    """
    try:
        import faiss
    except ImportError:
        raise ImportError("knn_search='faiss' needs faiss: pip install faiss-cpu") from None
    B, H, T, hs = q.shape
    C = mem["k"].shape[2]
    k = min(topk, C)
    faiss.omp_set_num_threads(torch.get_num_threads())
    with torch.no_grad():
        qn = F.normalize(q, dim=-1).float().cpu().numpy()
        keys = mem["k"].float().cpu().numpy()
        valid = mem["valid"].cpu().numpy()
    idx = np.zeros((B, H, T, k), np.int64)
    for b in range(B):
        slots = np.flatnonzero(valid[b])
        if len(slots) == 0:  # nothing stored: every pick is an empty slot (masked by retrieve)
            continue
        empty = np.flatnonzero(~valid[b])[:1]  # where faiss finds fewer than k: an empty slot
        for h in range(H):
            index = faiss.IndexFlatIP(hs)
            index.add(np.ascontiguousarray(keys[b, h, slots]))
            _, found = index.search(np.ascontiguousarray(qn[b, h]), k)
            idx[b, h] = np.where(found >= 0, slots[np.maximum(found, 0)], empty[0] if len(empty) else 0)
    return torch.from_numpy(idx).to(q.device)


def gather(t: torch.Tensor, idx: torch.Tensor, scratch: Scratch = None, name: str = "k") -> torch.Tensor:
    """Rows ``idx`` (B, H, T, k) of a memory tensor (B, H, C, hs): (B, H, T, k, hs).

    A flat ``index_select`` into a reused buffer: several times faster on a CPU than advanced
    indexing into a fresh tensor."""
    B, H, C, hs = t.shape
    flat = (idx + torch.arange(B * H, device=idx.device).view(B, H, 1, 1) * C).view(-1)
    out = _buffer(scratch, "picked_" + name, (flat.numel(), hs), t.dtype, t.device) if scratch is not None else None
    return torch.index_select(t.reshape(B * H * C, hs), 0, flat, out=out).view(*idx.shape, hs)


def retrieve(q: torch.Tensor, mem: dict, topk: int, how: str = "exact",
             scratch: Scratch = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k memories of each query (B, H, T, hs): (scores, indices), each (B, H, T, k), by cosine
    similarity; ``how`` is "exact" or "faiss". The scores of the k found keys carry gradients to
    the queries; empty slots (where fewer than k are stored) score -1e4."""
    idx = search_faiss(q, mem, topk) if how == "faiss" else search(q, mem, topk, scratch)
    keys = gather(mem["k"], idx, scratch, "k").to(q.dtype)
    scores = torch.einsum("bhtd,bhtkd->bhtk", F.normalize(q, dim=-1), keys)
    if bool(mem["valid"].all()):
        return scores, idx
    empty = ~torch.gather(mem["valid"][:, None, None, :].expand(*idx.shape[:3], -1), 3, idx)
    return scores.masked_fill(empty, -1e4), idx
