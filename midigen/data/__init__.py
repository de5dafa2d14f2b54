"""Corpora: folders of MIDI files -> prepared token files (prepare.py), read back (corpus.py),
and fed to a model in batches (batching.py)."""

from .corpus import PreparedCorpus

__all__ = ["PreparedCorpus"]
