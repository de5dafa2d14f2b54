"""Corpora: folders of MIDI files -> prepared token files (prepare.py, over pool, worker, cache,
collect, splits and assemble), read back (corpus.py), and fed to a model in batches (batching.py: the
three strategies, over gather.py: plans and gathering), augmented on the fly for training (augment.py:
`Augmenter`, transposition and tempo shifts).

Imports are lazy (`midigen.lazy`), so `prepare`'s worker processes start without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import install

_LAZY = {
    "Augmenter": "augment",
    "Contiguous": "batching", "PerSong": "batching", "RandomWindows": "batching", "make_batches": "batching",
    "PreparedCorpus": "corpus", "PrepareConfig": "prepare", "prepare": "prepare",
}

__all__ = [  # (the names of _LAZY; a test holds the two equal)
    "Augmenter", "Contiguous", "PerSong", "PrepareConfig", "PreparedCorpus", "RandomWindows", "make_batches", "prepare",
]

if TYPE_CHECKING:
    from .augment import Augmenter
    from .batching import Contiguous, PerSong, RandomWindows, make_batches
    from .corpus import PreparedCorpus
    from .prepare import PrepareConfig, prepare

__getattr__, __dir__ = install(__name__, _LAZY)
