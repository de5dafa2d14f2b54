"""Corpora: folders of MIDI files -> prepared token files (prepare.py), read back (corpus.py),
and fed to a model in batches (batching.py)."""

from .batching import Contiguous, PerSong, RandomWindows, make_batches
from .corpus import PreparedCorpus

__all__ = ["Contiguous", "PerSong", "PreparedCorpus", "RandomWindows", "make_batches"]
