"""Models: the GPT (gpt.py); Transformer-XL and kNN memories come in memory.py."""

from .gpt import GPT, GPTConfig, KVCache

__all__ = ["GPT", "GPTConfig", "KVCache"]
