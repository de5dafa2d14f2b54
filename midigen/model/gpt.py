"""A decoder-only GPT for music tokens, in one readable file (after nanoGPT's model.py).

What is particular to music here:

* **Musical position embeddings.** Each token carries its time step (see `Tokens.steps`), so
  besides the token's index in the sequence the model is told *where in the bar* it sits
  (beat-within-bar, ``step % steps_per_bar``) and *which bar* (``step // steps_per_bar``), as
  MusicAutoBot and the original notebooks did. ``musical=False`` switches them off, so their
  effect can be measured.
* **What is sounding** (``sounding=True``): each token also carries which parts have a note
  sounding at its time step, the steps until the first of them ends and how many sound
  (`midigen.encoding.sounding`, packed into one int64 per token), so keeping voices legato is a
  lookup, not a sum of durations and gaps over many tokens. The three embeddings start at zero,
  so a model trained without them can be fine-tuned with them (``--init-from``) from the same
  function.
* **Padding never counts.** Targets of -100 (what the batchers put on padding) are ignored by
  the loss, PyTorch's ``ignore_index`` convention.
* **Optional memory** (the blog's "Transformer Memory" section), switched on by the config and
  carried from one segment to the next *per batch row* in a `Memory` (memory.py), fed by the
  ``contiguous`` batcher (``reset`` says a row starts a new piece):

  - **XL (recurrent) memory** (``xl_memory=M``): every layer keeps the keys and values of the last
    ``M`` tokens of the same piece, detached (no gradient reaches past segments), and attends
    over memory + segment. Positions are rotary and *relative*: a memory model keeps keys
    un-rotated and rotates them when attending, with positions ``-M .. S-1`` against queries at
    ``0 .. T-1``, so distances stay right across the boundary (with ``M`` >= the segment length,
    XL over two segments gives exactly the logits of a plain pass over both, at any depth).
  - **kNN memory** (``knn_layers=(i, ...)``, Memorizing Transformers): those layers store every
    past key (L2-normalised) and value in a ring buffer of ``knn_capacity`` per row; each query
    retrieves its ``knn_topk`` most similar keys, attends over them, and a learned per-head gate
    mixes the two: ``out = g * memory + (1 - g) * local`` (``g`` = sigmoid(logit), the logits
    starting at ``knn_gate``: 0, half and half, or negative, closed at first).

  Both are cleared per row exactly when ``reset`` says so, never leak between rows, and can be
  combined. Generation keeps writing to them (`GPT.write_segment`), so a piece longer than the
  block still sees its own past.

Attention goes through ``F.scaled_dot_product_attention``, which picks flash / memory-efficient
kernels on GPU. Positions are learned absolute embeddings or rotary (a config choice). A `KVCache`
(cache.py) makes generation cost O(1) forward work per new token instead of re-running the whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import JSONConfig, opt
from .cache import KVCache
from .memory import Memory, gather, retrieve

if TYPE_CHECKING:
    from collections.abc import Callable

    Rope = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]  # (start, n) -> cos, sin of positions

# The packed sounding state's layout; `midigen.encoding.sounding` writes it (the tests hold the two equal)
SOUNDING_PART_BITS = 32  # bits 0..31: the parts sounding
SOUNDING_NEXT_SHIFT, SOUNDING_NEXT_MAX = 32, 63  # steps to the first note's end
SOUNDING_COUNT_SHIFT, SOUNDING_COUNT_MAX = 38, 31  # notes sounding

MODELS = ("gpt", "xl", "knn", "xl+knn")  # the named presets of `GPTConfig.for_model`


@dataclass
class GPTConfig(JSONConfig):
    vocab_size: int = opt(365, "tokens in the vocabulary (training: the corpus's)")
    block_size: int = opt(256, "longest sequence the model attends over, a segment for memory models "
                               "(training: --seq-len)")
    n_layer: int = opt(4, "transformer blocks")
    n_head: int = opt(4, "attention heads per block")
    n_embd: int = opt(256, "width of the residual stream (a multiple of n_head)")
    dropout: float = opt(0.0, "dropout probability")
    bias: bool = opt(False, "biases in Linear and LayerNorm layers (without: a little faster, as good)")
    tie_weights: bool = opt(True, "the output head shares the token embedding matrix")
    position: Literal["learned", "rotary"] = opt("learned", "learned absolute position embeddings, or rotary "
                                                           "(memory models: rotary)")
    musical: bool = opt(True, "beat-within-bar and bar embeddings from each token's time step")
    steps_per_bar: int = opt(16, "steps per bar for the musical embeddings (training: 4 beats of the encoding)")
    max_bars: int = opt(512, "bar indices wrap around after this many bars")
    sounding: bool = opt(False, "embed what is sounding at each token's time step (parts, steps to the first "
                                "note's end, count; needs base ids, not BPE)")
    rope_base: float = opt(10000.0, "base of the rotary embeddings' frequencies")
    # memory (needs position="rotary": positions relative to the segment)
    xl_memory: int = opt(0, "xl: tokens of the past each layer attends to (0: no XL memory; --model xl: seq-len)")
    knn_layers: tuple = opt((), "knn: indices of the layers with a kNN memory (--model knn: the last layer)")
    knn_capacity: int = opt(2048, "knn: memories per row and layer (the oldest make room)")
    knn_topk: int = opt(32, "knn: memories retrieved per query")
    knn_gate: float = opt(0.0, "knn: initial logit of each head's memory gate (0: sigmoid 0.5, half memory and "
                               "half local; negative: closed at first, e.g. -4 takes 1.8% from memory)")
    knn_search: Literal["exact", "faiss"] = opt("exact", "knn: exact (batched matmul + top-k on the model's device) "
                                                "or faiss (CPU, bounded memory for a huge capacity; "
                                                "pip install faiss-cpu)")

    def __post_init__(self):
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.position == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError("rotary positions need an even head size")
        self.knn_layers = tuple(int(i) for i in self.knn_layers)
        if self.xl_memory < 0:
            raise ValueError(f"xl_memory must be >= 0, got {self.xl_memory}")
        if self.has_memory and self.position != "rotary":
            raise ValueError("memory models need position='rotary' (positions relative to the segment)")
        if any(not 0 <= i < self.n_layer for i in self.knn_layers):
            raise ValueError(f"knn_layers {self.knn_layers} outside 0..{self.n_layer - 1}")
        if self.knn_layers and self.knn_topk > self.knn_capacity:
            raise ValueError("knn_topk must not exceed knn_capacity")

    @property
    def has_memory(self) -> bool:
        return self.xl_memory > 0 or bool(self.knn_layers)

    @classmethod
    def for_model(cls, name: str, **kw) -> GPTConfig:
        """Config of a named model: "gpt" (no memory), or "xl", "knn", "xl+knn" (rotary positions;
        by default ``xl_memory`` = block_size and ``knn_layers`` = the last layer). Also reads the
        config dicts of checkpoints saved before the memory models were folded into `GPT`."""
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
        if name != "gpt":
            kw.setdefault("position", "rotary")
        if "xl" in name:
            kw.setdefault("xl_memory", kw.get("block_size", cls.block_size))
        if "knn" in name:
            kw.setdefault("knn_layers", (kw.get("n_layer", cls.n_layer) - 1,))
        cfg = cls.from_dict(kw)
        if ("xl" in name) != (cfg.xl_memory > 0) or ("knn" in name) != bool(cfg.knn_layers):
            raise ValueError(f"model {name!r} does not match its config: xl_memory={cfg.xl_memory}, "
                             f"knn_layers={cfg.knn_layers}")
        return cfg


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels (0, 1), (2, 3), ... by position-dependent angles (rotary embeddings).

    As one complex multiplication: each pair is a complex number turned by e^(i angle). One
    vectorised kernel, where slicing the pairs apart and stacking them back costs ~10x as much
    (a third of a rotary model's attention time on a CPU)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * torch.complex(cos.float(), sin.float())).flatten(-2).type_as(x)


def _causal(T: int, S: int, p: int, device: torch.device) -> torch.Tensor:
    """(T, S) mask: query i (at position p + i) sees keys 0 .. p + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=p)


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention; with a `Memory`, also over XL memory and mixed with kNN memory."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused: one matmul
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)
        # memory models keep keys un-rotated (what the memories store) and rotate them when attending
        self.raw_keys = config.has_memory
        self.knn = layer in config.knn_layers
        if self.knn:
            self.topk, self.search_with = config.knn_topk, config.knn_search
            self.gate = nn.Parameter(torch.full((config.n_head,), float(config.knn_gate)))  # 0: half and half
            hs = config.n_embd // config.n_head
            self.knn_log_scale = nn.Parameter(torch.full((config.n_head,), float(torch.tensor(hs**0.5).log())))
        self.record: list | None = None  # a list: every pass appends what it attended to (inspection.py)

    def retrieve(self, q: torch.Tensor, mem: dict, memory: Memory | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k memories of each query (B, H, T, hs): (scores, indices), each (B, H, T, k)."""
        return retrieve(q, mem, self.topk, self.search_with, (memory, self.layer) if memory is not None else None)

    def forward(self, x: torch.Tensor, rope: Rope | None = None, cache: KVCache | None = None,
                memory: Memory | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Output (B, T, C) and this segment's un-rotated keys and values (what memories store)."""
        B, T, C = x.shape
        H, hs = self.n_head, C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, H, hs).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, H, hs).transpose(1, 2)
        v = v.view(B, T, H, hs).transpose(1, 2)
        new_kv, q_raw = (k, v), q
        p = cache.pos if cache is not None else 0  # position of the first new token in the segment
        if rope is not None and not self.raw_keys:  # rotate once; the cache keeps rotated keys
            cos, sin = rope(p, T)
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if cache is not None:
            cache.k[self.layer, :, :, p : p + T] = k
            cache.v[self.layer, :, :, p : p + T] = v
            k, v = cache.k[self.layer, :, :, : p + T], cache.v[self.layer, :, :, : p + T]
        S = k.shape[2]  # keys of the segment so far
        xl = memory.xl[self.layer] if memory is not None else None
        M = xl["k"].shape[2] if xl is not None else 0
        if M:
            k = torch.cat([xl["k"].to(k.dtype), k], 2)
            v = torch.cat([xl["v"].to(v.dtype), v], 2)
        if self.raw_keys:  # queries at p .. p+T-1, keys at -M .. S-1 (relative to the segment's start)
            q, k = _rope(q, *rope(p, T)), _rope(k, *rope(-M, M + S))
        drop = self.dropout if self.training else 0.0
        mask = None
        if M:  # memory slots where valid, the segment's keys causally
            segment = _causal(T, S, p, x.device).expand(B, 1, T, S)
            mask = torch.cat([xl["valid"][:, None, None, :].expand(B, 1, T, M), segment], -1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        elif T == 1 and cache is not None:  # one new token sees everything before it: no mask needed
            y = F.scaled_dot_product_attention(q, k, v)
        elif S == T:  # a whole segment: is_causal lets the kernel skip the masked half
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:  # several new tokens after a cached prefix
            mask = _causal(T, S, p, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        entry = None
        if self.record is not None:
            allowed = mask if mask is not None else _causal(T, S, p, x.device)
            scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(hs)
            entry = {"weights": scores.masked_fill(~allowed, float("-inf")).softmax(-1).detach()}
            self.record.append(entry)
        if self.knn and memory is not None:
            y = self._mix_knn(q_raw, y, memory, entry)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        y = self.proj(y)
        return (self.resid_drop(y) if self.training and self.dropout > 0 else y), new_kv

    def _mix_knn(self, q: torch.Tensor, y: torch.Tensor, memory: Memory, entry: dict | None):
        """Attention over each query's top-k kNN memories, mixed into ``y`` by the learned gate."""
        mem = memory.knn[self.layer]
        scores, idx = self.retrieve(q, mem, memory)  # (B, H, T, k)
        w = torch.softmax(scores * self.knn_log_scale.exp()[None, :, None, None], dim=-1)
        picked = gather(mem["v"], idx, (memory, self.layer), "v").to(q.dtype)  # (B, H, T, k, hs)
        y_mem = torch.einsum("bhtk,bhtkd->bhtd", w, picked)
        has = mem["valid"].any(1)[:, None, None, None]  # an empty memory adds nothing
        g = torch.sigmoid(self.gate)[None, :, None, None] * has
        if entry is not None:
            entry.update(knn_scores=scores.detach(), knn_slots=idx.clone(), knn_gate=g[..., 0, 0].detach())
        return g * y_mem + (1 - g) * y


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(F.gelu(self.fc(x)))
        return self.drop(x) if self.training and self.drop.p > 0 else x  # skip the call when it does nothing


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope: Rope | None = None, cache: KVCache | None = None,
                memory: Memory | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), rope, cache, memory)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        if config.musical:
            self.beat_emb = nn.Embedding(config.steps_per_bar, config.n_embd)
            self.bar_emb = nn.Embedding(config.max_bars, config.n_embd)
        if config.sounding:
            self.sounding_parts = nn.Linear(SOUNDING_PART_BITS, config.n_embd, bias=False)
            self.sounding_next = nn.Embedding(SOUNDING_NEXT_MAX + 1, config.n_embd)
            self.sounding_count = nn.Embedding(SOUNDING_COUNT_MAX + 1, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.wte.weight
        if config.position == "rotary":
            hs = config.n_embd // config.n_head
            inv = 1.0 / (config.rope_base ** (torch.arange(0, hs, 2).float() / hs))
            self.register_buffer("rope_inv_freq", inv, persistent=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by depth so the residual stream stays O(1)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            elif name.startswith("sounding_"):  # zero: adding them leaves a trained model's function as it was
                nn.init.zeros_(p)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def new_memory(self, batch_size: int) -> Memory | None:
        """Empty memories for ``batch_size`` rows, on the model's device; None for a model without memory."""
        if not self.config.has_memory:
            return None
        p = next(self.parameters())
        return Memory(self.config, batch_size, p.device, p.dtype)

    def embed(self, idx: torch.Tensor, steps: torch.Tensor | None = None, start_pos: int = 0,
              sounding: torch.Tensor | None = None) -> torch.Tensor:
        """Token + position (+ beat and bar, + sounding) embeddings of ``idx`` (B, T)."""
        B, T = idx.shape
        x = self.wte(idx)
        if self.wpe is not None:
            if start_pos + T > self.config.block_size:
                raise ValueError(f"sequence of {start_pos + T} tokens is longer than block_size "
                                 f"{self.config.block_size}")
            x = x + self.wpe.weight[start_pos : start_pos + T]  # a slice: cheaper than arange + lookup
        if self.config.musical:
            if steps is None:
                raise ValueError("this model uses musical embeddings: pass the tokens' time steps")
            steps = steps.long()
            spb = self.config.steps_per_bar
            x = x + self.beat_emb(steps % spb) + self.bar_emb((steps // spb) % self.config.max_bars)
        if self.config.sounding:
            if sounding is None:
                raise ValueError("this model embeds what is sounding: pass sounding= (the batch's \"sounding\", "
                                 "or midigen.encoding.sounding of the tokens)")
            s = sounding.long()
            bits = (s[..., None] >> torch.arange(SOUNDING_PART_BITS, device=s.device)) & 1
            x = (x + self.sounding_parts(bits.to(x.dtype))
                 + self.sounding_next((s >> SOUNDING_NEXT_SHIFT) & SOUNDING_NEXT_MAX)
                 + self.sounding_count((s >> SOUNDING_COUNT_SHIFT) & SOUNDING_COUNT_MAX))
        return self.drop(x) if self.training and self.config.dropout > 0 else x

    def _rope_fn(self, device: torch.device) -> Rope:
        """``rope(start, n)``: cos and sin of the rotary angles of positions start .. start+n-1."""
        inv = self.rope_inv_freq
        made = {}  # every layer asks for the same angles: compute them once per forward pass

        def rope(start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
            if (start, n) not in made:
                angles = torch.outer(torch.arange(start, start + n, device=device, dtype=inv.dtype), inv)  # (n, hs/2)
                made[(start, n)] = angles.cos(), angles.sin()
            return made[(start, n)]

        return rope

    def forward(self, idx: torch.Tensor, steps: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                cache: KVCache | None = None, memory: Memory | None = None, reset: torch.Tensor | None = None,
                valid: torch.Tensor | None = None, write: bool | None = None,
                sounding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, with ``targets``, the mean cross-entropy over non-padding.

        With a ``cache``, ``idx`` holds only the new tokens; their keys and values are appended.
        ``memory`` (a memory model's `Memory`, from `new_memory`): its rows where ``reset`` is True
        are cleared first; after the pass this segment's keys/values are written to it (``write``,
        default: when no ``cache`` is given; during cached generation `write_segment` does it at
        segment ends). ``valid`` (B, T) marks real tokens (default: all), so padding never becomes
        a memory. ``sounding`` (B, T): the tokens' packed sounding state, for a model that embeds it.
        """
        if memory is not None:
            memory.reset(reset)
        start = cache.pos if cache is not None else 0  # (memory models: rotary, so unused by embed)
        x = self.embed(idx, steps, start, sounding)
        rope = self._rope_fn(idx.device) if self.config.position == "rotary" else None
        new_kv = []
        for block in self.blocks:
            x, kv = block(x, rope, cache, memory)
            new_kv.append(kv)
        if cache is not None:
            cache.pos += idx.shape[1]
        if memory is not None and (cache is None if write is None else write):
            if valid is None:
                valid = torch.ones(idx.shape, dtype=torch.bool, device=idx.device)
            for i, (k, v) in enumerate(new_kv):
                memory.write(i, k, v, valid)
        x = self.ln_f(x)
        if targets is None:
            return self.head(x), None
        logits = self.head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def write_segment(self, memory: Memory, cache: KVCache) -> None:
        """Move a finished segment's (un-rotated) keys/values from the generation cache into the memories."""
        n = cache.pos
        valid = torch.ones(cache.k.shape[1], n, dtype=torch.bool, device=cache.k.device)
        for i in range(self.config.n_layer):
            memory.write(i, cache.k[i, :, :, :n], cache.v[i, :, :, :n], valid)

    def optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95),
                  device_type: str = "cpu") -> torch.optim.AdamW:
        """AdamW with decoupled weight decay on matrices only (not on biases and norms)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = device_type == "cuda"
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
