"""The blog's three-step encoding, both ways.

    Score --quantise--> SparseScore (sparse.py) --> PositionScore (position.py) --> ids (index.py)

`encode` takes the production path, straight from note arrays to position rows (no dense array);
`encode_via_sparse` goes through the sparse score, for teaching and tests. Both give identical
tokens. `decode` goes back to a `Score`.
"""

from __future__ import annotations

import os

from ..errors import MidiError
from ..midi import Score, read_midi
from .config import ENCODING_VERSION, EncodingConfig
from .index import Tokens, decode_position, encode_notes, encode_position, steps_of
from .position import GAP, TEMPO, PositionScore, sorted_notes
from .quantise import QuantisedScore, quantise
from .sparse import SparseScore
from .vocab import SPECIALS, Vocab

__all__ = [
    "ENCODING_VERSION", "EncodingConfig", "GAP", "PositionScore", "QuantisedScore", "SPECIALS",
    "SparseScore", "TEMPO", "Tokens", "Vocab", "decode", "decode_position", "encode", "encode_notes",
    "encode_position", "encode_via_sparse", "quantise", "steps_of",
]


def _as_score(score) -> Score:
    if isinstance(score, Score):
        return score
    if isinstance(score, (str, os.PathLike)):
        return read_midi(score)
    raise TypeError(f"expected a Score or a path to a MIDI file, got {type(score).__name__}")


def _vocab(vocab) -> Vocab:
    if vocab is None:
        return Vocab()
    if isinstance(vocab, EncodingConfig):
        return Vocab(vocab)
    return vocab


def encode(score, vocab: Vocab | EncodingConfig | None = None) -> Tokens:
    """MIDI file or `Score` -> `Tokens` (ids, per-token time steps, stats).

    Raises `MidiError` if the file is unreadable or nothing in it can be encoded.
    """
    vocab = _vocab(vocab)
    score = _as_score(score)
    notes = sorted_notes(quantise(score, vocab.config))
    if notes[-1]["encoded_notes"] == 0:
        st = notes[-1]
        raise MidiError(
            score.path,
            f"no encodable notes ({st['notes']} notes; {st['dropped_pitch_range']} outside the "
            f"pitch range, {st.get('dropped_drums', 0)} drum notes in an instrument-free encoding)",
        )
    return encode_notes(*notes, vocab)


def encode_via_sparse(score, vocab: Vocab | EncodingConfig | None = None) -> Tokens:
    """Like `encode`, but through the dense `SparseScore` (slow on long pieces; for teaching)."""
    vocab = _vocab(vocab)
    sparse = SparseScore.from_score(_as_score(score), vocab.config)
    return encode_position(sparse.to_position(), vocab)


def decode(ids, vocab: Vocab | EncodingConfig | None = None, *, strict: bool = False) -> Score:
    """Token ids -> `Score` (tempo from tempo tokens, instruments from instrument tokens)."""
    if isinstance(ids, Tokens):
        ids = ids.ids
    return decode_position(ids, _vocab(vocab), strict=strict).to_score()
