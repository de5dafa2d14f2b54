"""A decoder-only GPT for music tokens, in one readable file (after nanoGPT's model.py).

What is particular to music here:

* **Musical position embeddings.** Each token carries its time step (see `Tokens.steps`), so
  besides the token's index in the sequence the model is told *where in the bar* it sits
  (beat-within-bar, ``step % steps_per_bar``) and *which bar* (``step // steps_per_bar``), as
  MusicAutoBot and the original notebooks did. ``musical=False`` switches them off, so their
  effect can be measured.
* **Padding never counts.** Targets of -100 (what the batchers put on padding) are ignored by
  the loss, PyTorch's ``ignore_index`` convention.

Attention goes through ``F.scaled_dot_product_attention``, which picks flash / memory-efficient
kernels on GPU. Positions are learned absolute embeddings or rotary (a config choice). A `KVCache`
makes generation cost O(1) forward work per new token instead of re-running the whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import JSONConfig, opt


@dataclass
class GPTConfig(JSONConfig):
    vocab_size: int = opt(365, "tokens in the vocabulary (training: the corpus's)")
    block_size: int = opt(256, "longest sequence the model attends over (training: --seq-len)")
    n_layer: int = opt(4, "transformer blocks")
    n_head: int = opt(4, "attention heads per block")
    n_embd: int = opt(256, "width of the residual stream (a multiple of n_head)")
    dropout: float = opt(0.0, "dropout probability")
    bias: bool = opt(False, "biases in Linear and LayerNorm layers (without: a little faster, as good)")
    tie_weights: bool = opt(True, "the output head shares the token embedding matrix")
    position: Literal["learned", "rotary"] = opt("learned", "learned absolute position embeddings, or rotary")
    musical: bool = opt(True, "beat-within-bar and bar embeddings from each token's time step")
    steps_per_bar: int = opt(16, "steps per bar for the musical embeddings (training: 4 beats of the encoding)")
    max_bars: int = opt(512, "bar indices wrap around after this many bars")
    rope_base: float = opt(10000.0, "base of the rotary embeddings' frequencies")

    def __post_init__(self):
        super().__post_init__()
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.position == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError("rotary positions need an even head size")


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated.

    ``k[layer]``/``v[layer]`` are (batch, heads, max_len, head_size); ``pos`` is how many
    positions are filled.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int | None = None, device=None, dtype=None):
        max_len = max_len or config.block_size
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[3]


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels (0, 1), (2, 3), ... by position-dependent angles (rotary embeddings).

    As one complex multiplication: each pair is a complex number turned by e^(i angle). One
    vectorised kernel, where slicing the pairs apart and stacking them back costs ~10x as much
    (a third of a rotary model's attention time on a CPU)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * torch.complex(cos.float(), sin.float())).flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused: one matmul
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, cache: KVCache | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if rope is not None:
            q, k = _rope(q, *rope), _rope(k, *rope)
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            p = cache.pos
            cache.k[self.layer, :, :, p : p + T] = k
            cache.v[self.layer, :, :, p : p + T] = v
            k, v = cache.k[self.layer, :, :, : p + T], cache.v[self.layer, :, :, : p + T]
            if T == 1:  # one new token sees everything before it: no mask needed
                y = F.scaled_dot_product_attention(q, k, v)
            elif p == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # several new tokens after a cached prefix
                mask = torch.ones(T, p + T, dtype=torch.bool, device=x.device).tril(diagonal=p)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        y = self.proj(y)
        return self.resid_drop(y) if self.training and self.dropout > 0 else y


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):
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

    def forward(self, x, rope=None, cache=None):
        x = x + self.attn(self.ln1(x), rope, cache)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        if config.musical:
            self.beat_emb = nn.Embedding(config.steps_per_bar, config.n_embd)
            self.bar_emb = nn.Embedding(config.max_bars, config.n_embd)
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

    @staticmethod
    def _init_weights(m):
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

    def embed(self, idx, steps=None, start_pos: int = 0):
        """Token + position (+ beat and bar) embeddings of ``idx`` (B, T)."""
        B, T = idx.shape
        x = self.wte(idx)
        if self.wpe is not None:
            if start_pos + T > self.config.block_size:
                raise ValueError(f"sequence of {start_pos + T} tokens is longer than block_size {self.config.block_size}")
            x = x + self.wpe.weight[start_pos : start_pos + T]  # a slice: cheaper than arange + lookup
        if self.config.musical:
            if steps is None:
                raise ValueError("this model uses musical embeddings: pass the tokens' time steps")
            steps = steps.long()
            spb = self.config.steps_per_bar
            x = x + self.beat_emb(steps % spb) + self.bar_emb((steps // spb) % self.config.max_bars)
        return self.drop(x) if self.training and self.config.dropout > 0 else x

    def _rope(self, start_pos: int, T: int, device):
        if self.config.position != "rotary":
            return None
        t = torch.arange(start_pos, start_pos + T, device=device, dtype=self.rope_inv_freq.dtype)
        angles = torch.outer(t, self.rope_inv_freq)  # (T, hs/2)
        return angles.cos(), angles.sin()

    def forward(self, idx, steps=None, targets=None, cache: KVCache | None = None):
        """Logits (B, T, vocab) and, with ``targets``, the mean cross-entropy over non-padding.

        With a ``cache``, ``idx`` holds only the new tokens; their keys and values are appended.
        """
        start = cache.pos if cache is not None else 0
        x = self.embed(idx, steps, start)
        rope = self._rope(start, idx.shape[1], idx.device)
        for block in self.blocks:
            x = block(x, rope, cache)
        if cache is not None:
            cache.pos += idx.shape[1]
        x = self.ln_f(x)
        if targets is None:
            return self.head(x), None
        logits = self.head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def optimizer(self, lr: float, weight_decay: float, betas=(0.9, 0.95), device_type: str = "cpu"):
        """AdamW with decoupled weight decay on matrices only (not on biases and norms)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = device_type == "cuda"
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
