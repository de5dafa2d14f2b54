"""Transformer memory: Transformer-XL recurrence and Memorizing-Transformers kNN memory.

A plain GPT sees only its block of ``block_size`` tokens. The blog's "Transformer Memory" section
gives it a past, two ways, both carried from one segment to the next *per batch row*, fed by the
``contiguous`` batcher (each row streams one piece; ``reset`` says a row starts a new piece):

**XL (recurrent) memory** (``xl_memory=M``): every layer keeps the keys and values of the last
``M`` tokens of the same piece, detached from the graph (no gradient reaches past segments), and
the current segment attends over memory + itself. Positions are rotary and *relative*: keys are
kept un-rotated and rotated at attention time with positions ``-M .. T-1`` against queries at
``0 .. T-1``, so distances stay right across the boundary (with ``M`` >= the segment length, XL over two
segments gives exactly the logits of a plain pass over both, at any depth; later segments
differ, as each layer reaches only ``M`` further back).

**kNN memory** (``knn_layers=(i, ...)``): in those layers every past segment's keys (L2-normalised,
as in the Memorizing Transformers paper) and values go into a per-row memory of bounded
``knn_capacity`` (a ring buffer: the oldest entries make room; never wiped when full). Each query
retrieves its ``knn_topk`` most similar keys by exact search (one batched matmul and a top-k on
the model's device; or, with ``knn_search="faiss"``, a faiss index per row and head, for memories
too large for that), attends over them, and a learned per-head gate mixes this memory attention
with the local attention: ``out = g * memory + (1 - g) * local``.

Both are cleared per row exactly when ``reset`` says so, never leak between rows, and can be
combined. Generation keeps writing to them (see `midigen.generate`), so a piece longer than the
block still sees its own past.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import opt
from .gpt import GPT, MLP, GPTConfig, KVCache, _rope


@dataclass
class MemoryConfig(GPTConfig):
    position: Literal["learned", "rotary"] = opt("rotary", "memory models need rotary (positions relative to the segment)")
    xl_memory: int = opt(0, "xl: tokens of the past each layer attends to (0: no XL memory; --model xl: seq-len)")
    knn_layers: tuple = opt((), "knn: indices of the layers with a kNN memory (--model knn: the last layer)")
    knn_capacity: int = opt(2048, "knn: memories per row and layer (the oldest make room)")
    knn_topk: int = opt(32, "knn: memories retrieved per query")
    knn_search: Literal["exact", "faiss"] = opt("exact", "knn: exact (batched matmul + top-k on the model's device) "
                                                "or faiss (CPU, bounded memory for a huge capacity; pip install faiss-cpu)")

    def __post_init__(self):
        super().__post_init__()
        self.knn_layers = tuple(int(i) for i in self.knn_layers)
        if self.position != "rotary":
            raise ValueError("memory models need position='rotary' (positions relative to the segment)")
        if any(not 0 <= i < self.n_layer for i in self.knn_layers):
            raise ValueError(f"knn_layers {self.knn_layers} outside 0..{self.n_layer - 1}")
        if self.knn_layers and self.knn_topk > self.knn_capacity:
            raise ValueError("knn_topk must not exceed knn_capacity")

    @classmethod
    def for_model(cls, name: str, **kw) -> "MemoryConfig":
        """Config of a named variant: "xl", "knn" or "xl+knn" (defaults sized from block_size)."""
        block = kw.get("block_size", 256)
        n_layer = kw.get("n_layer", 4)
        if "xl" in name:
            kw.setdefault("xl_memory", block)
        if "knn" in name:
            kw.setdefault("knn_layers", (n_layer - 1,))
        return cls(**kw)


class Memory:
    """The memories of a batch: per layer XL keys/values and kNN keys/values with validity.

    Shapes: XL ``k``/``v`` (B, H, M, hs) and ``valid`` (B, M), newest last; kNN ``k``/``v``
    (B, H, C, hs) (each head's memories contiguous: the search is one plain batched matmul),
    ``valid`` (B, C) and the ring buffer's write position ``ptr`` (B,). ``scratch`` holds the kNN
    layers' work buffers, reused from segment to segment (allocating ~70 MB afresh each time
    costs more than the search's arithmetic on a CPU).
    """

    def __init__(self, config: MemoryConfig, batch_size: int, device=None, dtype=torch.float32):
        c = config
        hs = c.n_embd // c.n_head
        B, H = batch_size, c.n_head
        self.batch_size = B
        self.xl = []
        for _ in range(c.n_layer):
            if c.xl_memory:
                z = torch.zeros(B, H, c.xl_memory, hs, device=device, dtype=dtype)
                self.xl.append({"k": z, "v": z.clone(), "valid": torch.zeros(B, c.xl_memory, dtype=torch.bool, device=device)})
            else:
                self.xl.append(None)
        self.knn = {}
        self.scratch: dict = {}
        for i in c.knn_layers:
            z = torch.zeros(B, H, c.knn_capacity, hs, device=device, dtype=dtype)
            self.knn[i] = {"k": z, "v": z.clone(), "valid": torch.zeros(B, c.knn_capacity, dtype=torch.bool, device=device),
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

    def buffer(self, layer: int, name: str, shape, dtype, device) -> torch.Tensor:
        """A work buffer of the kNN search, kept for the next segment."""
        t = self.scratch.get((layer, name))
        if t is None or t.shape != torch.Size(shape) or t.dtype != dtype or t.device != torch.device(device):
            t = self.scratch[(layer, name)] = torch.empty(shape, dtype=dtype, device=device)
        return t


class MemoryAttention(nn.Module):
    def __init__(self, config: MemoryConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_drop = nn.Dropout(config.dropout)
        self.dropout = config.dropout
        self.knn = layer in config.knn_layers
        if self.knn:
            self.topk = config.knn_topk
            self.search_with = config.knn_search
            self.gate = nn.Parameter(torch.zeros(config.n_head))  # sigmoid(0) = 0.5: half and half
            hs = config.n_embd // config.n_head
            self.knn_log_scale = nn.Parameter(torch.full((config.n_head,), float(torch.log(torch.tensor(hs**0.5)))))

    def search(self, q: torch.Tensor, mem: dict, memory: Memory | None = None) -> torch.Tensor:
        """Indices (B, H, T, k) of each query's top-k memories by cosine similarity: exact search.

        One batched matmul over all stored keys and a top-k, without autograd: no gradient needs
        the scores of the keys *not* chosen, so neither the (B, H, T, C) similarities nor the
        top-k are kept for the backward pass (`retrieve` recomputes the k chosen scores with
        gradients). ``memory`` lends reusable work buffers.
        """
        if self.search_with == "faiss":
            return self._search_faiss(q, mem)
        B, H, T, hs = q.shape
        C = mem["k"].shape[2]
        k = min(self.topk, C)
        buf = (lambda name, shape, dtype: memory.buffer(self.layer, name, shape, dtype, q.device)) if memory else (
            lambda name, shape, dtype: torch.empty(shape, dtype=dtype, device=q.device))
        with torch.no_grad():
            qn = F.normalize(q, dim=-1).reshape(B * H, T, hs).to(mem["k"].dtype)
            sim = torch.bmm(qn, mem["k"].view(B * H, C, hs).mT, out=buf("sim", (B * H, T, C), qn.dtype))
            if not bool(mem["valid"].all()):  # empty slots: below every cosine (which lie in [-1, 1])
                sim.view(B, H, T, C).masked_fill_(~mem["valid"][:, None, None, :], -1e4)
            values = buf("top_values", (B * H, T, k), sim.dtype)
            idx = buf("top_index", (B * H, T, k), torch.long)
            torch.topk(sim, k, dim=-1, sorted=False, out=(values, idx))
        return idx.view(B, H, T, k)

    def _search_faiss(self, q: torch.Tensor, mem: dict) -> torch.Tensor:
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
        k = min(self.topk, C)
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

    def gather(self, t: torch.Tensor, idx: torch.Tensor, memory: Memory | None = None, name: str = "k") -> torch.Tensor:
        """Rows ``idx`` (B, H, T, k) of a memory tensor (B, H, C, hs): (B, H, T, k, hs).

        A flat ``index_select`` into a reused buffer: several times faster on a CPU than advanced
        indexing into a fresh tensor."""
        B, H, C, hs = t.shape
        flat = (idx + torch.arange(B * H, device=idx.device).view(B, H, 1, 1) * C).view(-1)
        shape = (flat.numel(), hs)
        out = memory.buffer(self.layer, "picked_" + name, shape, t.dtype, t.device) if memory else None
        return torch.index_select(t.reshape(B * H * C, hs), 0, flat, out=out).view(*idx.shape, hs)

    def retrieve(self, q: torch.Tensor, mem: dict, memory: Memory | None = None):
        """Top-k memories of each query: (scores, indices), each (B, H, T, k), by cosine similarity.

        The scores of the k found keys carry gradients to the queries."""
        idx = self.search(q, mem, memory)
        keys = self.gather(mem["k"], idx, memory, "k").to(q.dtype)
        scores = torch.einsum("bhtd,bhtkd->bhtk", F.normalize(q, dim=-1), keys)
        if bool(mem["valid"].all()):
            return scores, idx
        empty = ~torch.gather(mem["valid"][:, None, None, :].expand(*idx.shape[:3], -1), 3, idx)
        return scores.masked_fill(empty, -1e4), idx

    def forward(self, x, rope_fn, memory: Memory | None, cache: KVCache | None):
        B, T, C = x.shape
        H, hs = self.n_head, C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, H, hs).transpose(1, 2)
        k = k.view(B, T, H, hs).transpose(1, 2)
        v = v.view(B, T, H, hs).transpose(1, 2)
        new_k, new_v = k, v  # un-rotated: what memories store
        # keys of this segment so far: cached ones (generation) then the new ones
        p = 0
        if cache is not None:
            p = cache.pos
            cache.k[self.layer, :, :, p : p + T] = k
            cache.v[self.layer, :, :, p : p + T] = v
            k, v = cache.k[self.layer, :, :, : p + T], cache.v[self.layer, :, :, : p + T]
        S = k.shape[2]  # keys of the segment
        xl = memory.xl[self.layer] if memory is not None else None
        M = xl["k"].shape[2] if xl is not None else 0
        if M:
            k = torch.cat([xl["k"].to(k.dtype), k], 2)
            v = torch.cat([xl["v"].to(v.dtype), v], 2)
        # rotary: queries at p .. p+T-1, keys at -M .. S-1 (relative to the segment's start)
        cq, sq = rope_fn(p, T)
        ck, sk = rope_fn(-M, M + S)
        qr, kr = _rope(q, cq, sq), _rope(k, ck, sk)
        # mask: memory slots where valid; the segment's keys causally
        drop = self.dropout if self.training else 0.0
        if M:
            causal = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=p)
            mask = torch.cat([xl["valid"][:, None, None, :].expand(B, 1, T, M), causal.expand(B, 1, T, S)], -1)
            y = F.scaled_dot_product_attention(qr, kr, v, attn_mask=mask, dropout_p=drop)
        elif T == 1 and cache is not None:
            y = F.scaled_dot_product_attention(qr, kr, v)
        elif p == 0 and S == T:  # a whole segment: is_causal lets the kernel skip the masked half
            y = F.scaled_dot_product_attention(qr, kr, v, is_causal=True, dropout_p=drop)
        else:
            causal = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=p)
            y = F.scaled_dot_product_attention(qr, kr, v, attn_mask=causal, dropout_p=drop)
        if self.knn and memory is not None:
            mem = memory.knn[self.layer]
            scores, idx = self.retrieve(q, mem, memory)  # (B, H, T, k)
            w = torch.softmax(scores * self.knn_log_scale.exp()[None, :, None, None], dim=-1)
            picked = self.gather(mem["v"], idx, memory, "v").to(q.dtype)  # (B, H, T, k, hs)
            y_mem = torch.einsum("bhtk,bhtkd->bhtd", w, picked)
            has = mem["valid"].any(1)[:, None, None, None]  # an empty memory adds nothing
            g = torch.sigmoid(self.gate)[None, :, None, None] * has
            y = g * y_mem + (1 - g) * y
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y)), (new_k, new_v)


class MemoryBlock(nn.Module):
    def __init__(self, config: MemoryConfig, layer: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = MemoryAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rope_fn, memory, cache):
        a, kv = self.attn(self.ln1(x), rope_fn, memory, cache)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class MemoryGPT(GPT):
    """A GPT whose layers read (and, segment by segment, write) XL and/or kNN memories."""

    def __init__(self, config: MemoryConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(MemoryBlock(config, i) for i in range(config.n_layer))
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * config.n_layer) ** 0.5)
        for b in self.blocks:
            if b.attn.knn:
                nn.init.zeros_(b.attn.gate)

    def new_memory(self, batch_size: int) -> Memory:
        p = next(self.parameters())
        return Memory(self.config, batch_size, p.device, p.dtype)

    def _rope_fn(self, device):
        inv = self.rope_inv_freq
        made = {}  # every layer asks for the same angles: compute them once per forward pass

        def fn(start: int, n: int):
            if (start, n) not in made:
                t = torch.arange(start, start + n, device=device, dtype=inv.dtype)
                a = torch.outer(t, inv)
                made[(start, n)] = a.cos(), a.sin()
            return made[(start, n)]

        return fn

    def forward(self, idx, steps=None, targets=None, cache: KVCache | None = None, memory: Memory | None = None,
                reset: torch.Tensor | None = None, valid: torch.Tensor | None = None, write: bool | None = None):
        """Like `GPT.forward`, with memories.

        ``memory``: the batch's `Memory` (rows cleared first where ``reset`` is True); after the
        pass this segment's keys/values are written to it (``write``, default: when no ``cache``
        is given; during cached generation `write_segment` does it at segment ends). ``valid``
        (B, T) marks real tokens (default: all), so padding never becomes a memory.
        """
        if memory is not None:
            memory.reset(reset)
        if write is None:
            write = cache is None
        # absolute positions are not used (rotary); musical embeddings come from the steps
        x = self.embed(idx, steps, 0)
        rope_fn = self._rope_fn(idx.device)
        if valid is None:
            valid = torch.ones(idx.shape, dtype=torch.bool, device=idx.device)
        new_kv = []
        for block in self.blocks:
            x, kv = block(x, rope_fn, memory, cache)
            new_kv.append(kv)
        if cache is not None:
            cache.pos += idx.shape[1]
        if memory is not None and write:
            for i, (k, v) in enumerate(new_kv):
                memory.write(i, k, v, valid)
        x = self.ln_f(x)
        logits = self.head(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def write_segment(self, memory: Memory, cache: KVCache) -> None:
        """Move a finished segment's keys/values from the generation cache into the memories."""
        n = cache.pos
        valid = torch.ones(cache.k.shape[1], n, dtype=torch.bool, device=cache.k.device)
        for i in range(self.config.n_layer):
            memory.write(i, cache.k[i, :, :, :n], cache.v[i, :, :, :n], valid)
