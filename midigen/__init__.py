"""midigen: a GPT for music, from MIDI files to tokens, a trained model, generated music and back.

The whole pipeline is here at the top level, one name per step (docs/architecture.md says which
file holds which step)::

    score = midigen.read_midi("song.mid")                  # MIDI file -> Score   (midi.py)
    tokens = midigen.Tokenizer().encode(score)             # Score -> Tokens      (encoding/)
    midigen.prepare(["my_midi/"], "data/prepared/mine")    # folders -> corpus    (data/)
    model, tok, meta = midigen.load_model("bach")          # checkpoint -> GPT    (checkpoint.py, model/)
    (sample,) = midigen.generate(model, tok, score)        # GPT -> Tokens        (generate.py)
    midigen.play(sample)                                   # Tokens -> audio      (playback.py)

Names are imported LAZILY, on first use (PEP 562: `midigen.lazy` over the `_LAZY` table below),
so ``import midigen`` loads neither torch nor matplotlib nor music21 (nor numpy), and the worker
processes of `prepare` stay free of torch. Submodules load on first use too (``midigen.playback``).
``midigen.generate`` and ``midigen.evaluate`` are the functions; their modules are
``sys.modules["midigen.generate"]`` / ``["midigen.evaluate"]`` (``from midigen.generate import
SamplingConfig`` works as ever).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import install

__version__ = "0.1.0"

#: Every public name -> the module that defines it (relative to midigen).
_LAZY = {
    # MIDI in and out
    "Score": "midi", "read_midi": "midi", "write_midi": "midi", "instrument_name": "instruments",
    # the encoding
    "EncodingConfig": "encoding", "PositionScore": "encoding", "SparseScore": "encoding", "Tokenizer": "encoding",
    "Tokens": "encoding", "decode": "encoding", "encode": "encoding",
    # corpora and batches
    "PrepareConfig": "data.prepare", "prepare": "data.prepare", "PreparedCorpus": "data.corpus",
    "make_batches": "data.batching",
    # the model, training, checkpoints and the bundled assets
    "GPT": "model", "GPTConfig": "model", "TrainConfig": "train", "Trainer": "train",
    "load_model": "checkpoint", "pretrained": "checkpoint", "asset_path": "assets",
    # generation and evaluation
    "SamplingConfig": "generate", "generate": "generate", "EvaluateConfig": "evaluate", "evaluate": "evaluate",
    # listening and sheet music
    "piano_roll": "playback", "play": "playback", "render": "playback", "write_audio": "playback",
    "show_score": "notation", "write_score": "notation",
    # errors
    "CheckpointError": "errors", "DecodeError": "errors", "MidiError": "errors", "PlaybackError": "errors",
    "TrainingError": "errors", "VocabError": "errors",
}

__all__ = [  # (the names of _LAZY; a test holds the two equal)
    "CheckpointError", "DecodeError", "EncodingConfig", "EvaluateConfig", "GPT", "GPTConfig", "MidiError",
    "PlaybackError", "PositionScore", "PrepareConfig", "PreparedCorpus", "SamplingConfig", "Score",
    "SparseScore", "Tokenizer", "Tokens", "TrainConfig", "Trainer", "TrainingError", "VocabError", "asset_path",
    "decode", "encode", "evaluate", "generate", "instrument_name", "load_model", "make_batches", "piano_roll",
    "play", "prepare", "pretrained", "read_midi", "render", "show_score", "write_audio", "write_midi",
    "write_score",
]

if TYPE_CHECKING:  # what IDEs and type checkers see (never run)
    from .assets import asset_path
    from .checkpoint import load_model, pretrained
    from .data.batching import make_batches
    from .data.corpus import PreparedCorpus
    from .data.prepare import PrepareConfig, prepare
    from .encoding import EncodingConfig, PositionScore, SparseScore, Tokenizer, Tokens, decode, encode
    from .errors import CheckpointError, DecodeError, MidiError, PlaybackError, TrainingError, VocabError
    from .evaluate import EvaluateConfig, evaluate
    from .generate import SamplingConfig, generate
    from .instruments import instrument_name
    from .midi import Score, read_midi, write_midi
    from .model import GPT, GPTConfig
    from .notation import show_score, write_score
    from .playback import piano_roll, play, render, write_audio
    from .train import TrainConfig, Trainer


__getattr__, __dir__ = install(__name__, _LAZY)
