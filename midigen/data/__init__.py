"""Corpora: folders of MIDI files -> prepared token files (prepare.py, over pool, worker, cache,
collect, splits and assemble), read back (corpus.py), and fed to a model in batches (batching.py: the
three strategies, over gather.py: plans and gathering).

Imports are lazy, so `prepare`'s worker processes start without loading torch.
"""

__all__ = ["Contiguous", "PerSong", "PrepareConfig", "PreparedCorpus", "RandomWindows", "make_batches", "prepare"]


def __getattr__(name: str) -> object:
    if name in ("Contiguous", "PerSong", "RandomWindows", "make_batches"):
        from . import batching

        return getattr(batching, name)
    if name == "PreparedCorpus":
        from .corpus import PreparedCorpus

        return PreparedCorpus
    if name in ("prepare", "PrepareConfig"):
        from .prepare import PrepareConfig, prepare

        return prepare if name == "prepare" else PrepareConfig
    raise AttributeError(f"module 'midigen.data' has no attribute {name!r}")
