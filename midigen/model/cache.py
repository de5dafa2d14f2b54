"""The `KVCache` of generation: keys and values of the tokens seen so far, so that each new token
costs O(1) forward work instead of a pass over the whole prefix (`midigen.generate`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .gpt import GPTConfig


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated.

    ``k[layer]``/``v[layer]`` are (batch, heads, max_len, head_size); ``pos`` is how many
    positions are filled. (A memory model's cache holds un-rotated keys: see `GPT.write_segment`.)
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        max_len = max_len or config.block_size
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[3]
