"""midigen: a GPT for music, from MIDI files to tokens and back.

The pipeline, each step in the file named after it::

    midi.py            MIDI file <-> Score (numpy note arrays, tempi, time signatures)
    encoding/sparse    Score  -> SparseScore   (instrument x step x pitch -> duration)
    encoding/position  Score  -> PositionScore ((pitch, duration) rows, (-1, gap) between steps)
    encoding/index     PositionScore -> token ids (and back)
    encoding/tokenizer Tokenizer: config + vocabulary + optional BPE merges + grammar, one file
"""

from . import check, notation, playback  # noqa: F401  (midigen.check, .notation, .playback as attributes)
from .assets import asset_path
from .encoding import EncodingConfig, PositionScore, SparseScore, Tokenizer, Tokens, decode, encode
from .errors import DecodeError, MidiError, VocabError
from .instruments import instrument_name
from .midi import Score, read_midi, write_midi

__version__ = "0.1.0"

__all__ = [
    "DecodeError", "EncodingConfig", "MidiError", "PositionScore", "Score", "SparseScore", "Tokens",
    "Tokenizer", "VocabError", "asset_path", "decode", "encode", "instrument_name", "load_model", "pretrained",
    "read_midi", "write_midi",
]


def __getattr__(name: str):
    if name in ("load_model", "pretrained"):  # (torch is imported on first use only)
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'midigen' has no attribute {name!r}")
