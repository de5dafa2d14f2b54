"""The blog's three-step encoding, both ways.

    Score --quantise--> SparseScore (sparse.py) --> PositionScore (position.py) --> ids (index.py)

`Tokenizer` is the object that gives ids their meaning (config, vocabulary, optional BPE merges,
grammar; saved as ``tokenizer.json``). Its `encode` takes the production path, straight from note
arrays to ids (no dense array); `encode_via_sparse` goes through the sparse score, for teaching and
tests. Both give identical tokens. `decode` goes back to a `Score`; the module-level `encode` and
`decode` are thin conveniences over a tokenizer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .config import ENCODING_VERSION, EncodingConfig
from .index import Tokens, decode_position, encode_notes, encode_position, steps_of
from .position import GAP, TEMPO, PositionScore, SortedNotes, sorted_notes
from .quantise import QuantisedScore, quantise
from .sparse import SparseScore
from .tokenizer import KIND_NAMES, Tokenizer, _as_score, as_score
from .vocab import SPECIALS

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..midi import Score

__all__ = [
    "ENCODING_VERSION", "EncodingConfig", "GAP", "KIND_NAMES", "PositionScore", "QuantisedScore", "SPECIALS",
    "SortedNotes", "SparseScore", "TEMPO", "Tokenizer", "Tokens", "as_score", "decode", "decode_position", "encode",
    "encode_notes", "encode_position", "encode_via_sparse", "quantise", "sorted_notes", "steps_of",
]


def _tokenizer(tokenizer: Tokenizer | EncodingConfig | None) -> Tokenizer:
    if tokenizer is None:
        return Tokenizer()
    if isinstance(tokenizer, EncodingConfig):
        return Tokenizer(tokenizer)
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"expected a Tokenizer (or an EncodingConfig), got {type(tokenizer).__name__}")
    return tokenizer


def encode(score: Score | str | os.PathLike, tokenizer: Tokenizer | EncodingConfig | None = None) -> Tokens:
    """MIDI file or `Score` -> `Tokens`: ``tokenizer.encode(score)`` (default: `Tokenizer()`)."""
    return _tokenizer(tokenizer).encode(score)


def encode_via_sparse(score: Score | str | os.PathLike, tokenizer: Tokenizer | EncodingConfig | None = None) -> Tokens:
    """Like `encode` (base ids), but through the dense `SparseScore` (slow on long pieces; for teaching)."""
    tokenizer = _tokenizer(tokenizer)
    sparse = SparseScore.from_score(_as_score(score), tokenizer.config)
    return encode_position(sparse.to_position(), tokenizer)


def decode(ids: ArrayLike, tokenizer: Tokenizer | EncodingConfig | None = None, *, strict: bool = False) -> Score:
    """Token ids -> `Score`: ``tokenizer.decode(ids, strict=strict)``."""
    return _tokenizer(tokenizer).decode(ids, strict=strict)
