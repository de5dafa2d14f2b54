"""`Vocab`: token strings <-> integer ids, derived from an `EncodingConfig`, saved as JSON.

Layout (ids in this order): the specials ``<pad> <sos> <eos> <sep>``, note tokens
``n{min_pitch}..n{max_pitch}``, duration tokens ``d1..d{max_duration}``, then, where the config
keeps them, instrument tokens ``i0..i127`` and ``drums``, and tempo tokens ``t{qpm}``.
``<pad>`` is id 0 so zero-filled buffers are padding.

Each id also has a *kind* (`NOTE`, `DUR`, ...) and a *value* (pitch, steps, instrument key,
tempo bin) in numpy lookup tables, so encoders and decoders work on whole arrays at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import VocabError
from .config import EncodingConfig

VOCAB_FORMAT = "midigen.vocab"
VOCAB_VERSION = 1

PAD, SOS, EOS, SEP = "<pad>", "<sos>", "<eos>", "<sep>"
SPECIALS = (PAD, SOS, EOS, SEP)

# Token kinds
K_PAD, K_SOS, K_EOS, K_SEP, K_NOTE, K_DUR, K_INSTR, K_TEMPO = range(8)
KIND_NAMES = ("pad", "sos", "eos", "sep", "note", "duration", "instrument", "tempo")


class Vocab:
    """The token vocabulary of one encoding configuration."""

    def __init__(self, config: EncodingConfig | None = None):
        self.config = cfg = config or EncodingConfig()
        tokens = list(SPECIALS)
        kinds = [K_PAD, K_SOS, K_EOS, K_SEP]
        values = [0, 0, 0, 0]

        def add(names, kind, vals):
            tokens.extend(names)
            kinds.extend([kind] * len(names))
            values.extend(vals)

        pitches = list(range(cfg.min_pitch, cfg.max_pitch + 1))
        self.note_offset = len(tokens)
        add([f"n{p}" for p in pitches], K_NOTE, pitches)
        self.dur_offset = len(tokens)
        add([f"d{d}" for d in range(1, cfg.max_duration + 1)], K_DUR, list(range(1, cfg.max_duration + 1)))
        self.instr_offset = len(tokens)
        if cfg.instruments:
            add([f"i{p}" for p in range(128)] + ["drums"], K_INSTR, list(range(129)))
        self.tempo_offset = len(tokens)
        if cfg.tempo:
            tv = cfg.tempo_values()
            add([f"t{q:g}" if q == round(q) else f"t{q:.1f}" for q in tv], K_TEMPO, list(range(len(tv))))
        self.tokens: list[str] = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        if len(self.index) != len(tokens):
            raise VocabError("duplicate token names; tempo bins too fine for their labels")
        self.kind = np.asarray(kinds, np.int8)
        self.value = np.asarray(values, np.int64)
        self.pad_id, self.sos_id, self.eos_id, self.sep_id = 0, 1, 2, 3

    # ------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens and self.config == other.config

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, instruments={self.config.instruments}, tempo={self.config.tempo})"

    @property
    def dtype(self):
        """The smallest unsigned dtype that holds every id (uint16 for any realistic config)."""
        return np.uint16 if len(self) <= 65536 else np.uint32

    def to_ids(self, tokens) -> np.ndarray:
        """Token strings (a list, or one space-separated string) to ids."""
        if isinstance(tokens, str):
            tokens = tokens.replace("><", "> <").split()
        try:
            return np.asarray([self.index[t] for t in tokens], np.int64)
        except KeyError as exc:
            raise VocabError(f"unknown token {exc.args[0]!r}") from None

    def to_tokens(self, ids) -> list[str]:
        return [self.tokens[i] for i in np.asarray(ids).tolist()]

    def to_base(self, ids) -> np.ndarray:
        """Base ids (the identity here; a `BPE` tokenizer expands merged tokens)."""
        return np.asarray(ids, np.int64)

    def notes_per_token(self) -> np.ndarray:
        """How many notes each token stands for (1 for note tokens, else 0)."""
        return (self.kind == K_NOTE).astype(np.int64)

    def decode(self, ids, *, strict: bool = False):
        """Token ids -> `Score` (see `midigen.encoding.decode`)."""
        from . import decode

        return decode(ids, self, strict=strict)

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "encoding": self.config.to_dict(),
            "tokens": self.tokens,
        }

    def save(self, path) -> Path:
        """Write the vocabulary as JSON (atomically)."""
        return atomic.write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, expected: EncodingConfig | None = None, where: str = "vocabulary") -> "Vocab":
        if not isinstance(d, dict) or d.get("format") != VOCAB_FORMAT:
            raise VocabError(f"{where}: not a midigen vocabulary (format is {d.get('format') if isinstance(d, dict) else type(d).__name__!r})")
        if d.get("version") != VOCAB_VERSION:
            raise VocabError(f"{where}: vocabulary version {d.get('version')} is not supported (expected {VOCAB_VERSION})")
        try:
            cfg = EncodingConfig.from_dict(d["encoding"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VocabError(f"{where}: bad encoding config: {exc}") from None
        if expected is not None and cfg != expected:
            diff = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in cfg.diff(expected).items())
            raise VocabError(f"{where}: written by a different encoding configuration ({diff})")
        vocab = cls(cfg)
        if d.get("tokens") != vocab.tokens:
            raise VocabError(f"{where}: token list does not match its encoding config (edited or corrupt file)")
        return vocab

    @classmethod
    def load(cls, path, expected: EncodingConfig | None = None) -> "Vocab":
        """Read a vocabulary JSON; with ``expected``, fail clearly if it was made differently."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise VocabError(f"{p}: no such vocabulary file") from None
        except json.JSONDecodeError as exc:
            raise VocabError(f"{p}: not valid JSON ({exc})") from None
        return cls.from_dict(d, expected, where=str(p))
