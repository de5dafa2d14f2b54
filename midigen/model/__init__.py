"""The model: one GPT (gpt.py) with optional XL and kNN memory, whose stores are in memory.py;
the KV cache of generation in cache.py."""

from .cache import KVCache
from .gpt import GPT, MODELS, GPTConfig
from .inspection import attention_distance, attention_maps, cosine_similarity, pca, recording
from .memory import Memory


def build_model(name: str, config: dict) -> GPT:
    """A model by name ("gpt", "xl", "knn", "xl+knn") from a config dict (as checkpoints store it).

    The name picks the preset of `GPTConfig.for_model` (memory models: rotary positions, and by
    default an XL memory of block_size tokens / a kNN memory in the last layer) and must agree
    with the config: a checkpoint's "xl" model has an XL memory. The config dicts of checkpoints
    saved before the memory models were folded into `GPT` ("MemoryConfig") load as they are, and
    so do their weights (same parameter names).
    """
    return GPT(GPTConfig.for_model(name, **config))


__all__ = ["GPT", "GPTConfig", "KVCache", "MODELS", "Memory", "attention_distance", "attention_maps", "build_model",
           "cosine_similarity", "pca", "recording"]
