"""`Vocab`: the base token table of an `EncodingConfig` (internal to `midigen.encoding`).

The public object is `midigen.Tokenizer`, which holds one of these (``Tokenizer.table``) and adds
BPE merges, the grammar and the file format; the encoder and decoder read the table's offsets
and per-id arrays directly.

Layout (ids in this order): the specials ``<pad> <sos> <eos> <sep>``, note tokens
``n{min_pitch}..n{max_pitch}``, duration tokens ``d1..d{max_duration}``, then, where the config
keeps them, instrument tokens ``i0..i127`` and ``drums``, tempo tokens ``t{qpm}``, part tokens
``p0..p{max_parts-1}`` (``parts``) and velocity tokens ``v0..v{velocity_bins-1}`` (the last two
only where the config turns them on, so older configs keep their ids).
``<pad>`` is id 0 so zero-filled buffers are padding.

Each id also has a *kind* (`NOTE`, `DUR`, ...) and a *value* (pitch, steps, instrument key,
tempo bin) in numpy lookup tables, so encoders and decoders work on whole arrays at once.
"""

from __future__ import annotations

import numpy as np

from ..errors import VocabError
from .config import EncodingConfig

PAD, SOS, EOS, SEP = "<pad>", "<sos>", "<eos>", "<sep>"
SPECIALS = (PAD, SOS, EOS, SEP)

# Base token kinds (the grammar's alphabet; `Tokenizer.kinds` gives the coarser public kinds)
K_PAD, K_SOS, K_EOS, K_SEP, K_NOTE, K_DUR, K_INSTR, K_TEMPO, K_PART, K_VEL = range(10)
BASE_KIND_NAMES = ("pad", "sos", "eos", "sep", "note", "duration", "instrument", "tempo", "part", "velocity")


class Vocab:
    """The base token table of one encoding configuration."""

    def __init__(self, config: EncodingConfig | None = None):
        self.config = cfg = config or EncodingConfig()
        tokens = list(SPECIALS)
        kinds = [K_PAD, K_SOS, K_EOS, K_SEP]
        values = [0, 0, 0, 0]

        def add(names: list[str], kind: int, vals: list[int]) -> None:
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
        self.part_offset = len(tokens)
        if cfg.parts:
            add([f"p{k}" for k in range(cfg.max_parts)], K_PART, list(range(cfg.max_parts)))
        self.vel_offset = len(tokens)
        if cfg.velocity_bins:
            add([f"v{b}" for b in range(cfg.velocity_bins)], K_VEL, list(range(cfg.velocity_bins)))
        self.tokens: list[str] = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        if len(self.index) != len(tokens):
            raise VocabError("duplicate token names; tempo bins too fine for their labels")
        self.kind = np.asarray(kinds, np.int8)
        self.value = np.asarray(values, np.int64)
        self.pad_id, self.sos_id, self.eos_id, self.sep_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, instruments={self.config.instruments}, tempo={self.config.tempo})"
