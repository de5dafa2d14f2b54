"""Models: the GPT (gpt.py); Transformer-XL and kNN memories come in memory.py."""

from .gpt import GPT, GPTConfig, KVCache
from .memory import Memory, MemoryConfig, MemoryGPT

MODELS = ("gpt", "xl", "knn", "xl+knn")


def build_model(name: str, config: dict):
    """A model by name ("gpt", "xl", "knn", "xl+knn") from a config dict."""
    if name == "gpt":
        return GPT(GPTConfig.from_dict(config))
    if name in MODELS:
        return MemoryGPT(MemoryConfig.from_dict(config))
    raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")


__all__ = ["GPT", "GPTConfig", "KVCache", "MODELS", "Memory", "MemoryConfig", "MemoryGPT", "build_model"]
