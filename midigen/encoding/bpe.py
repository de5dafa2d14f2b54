"""Byte-pair encoding over music tokens that respects the time dimension ("action" encoding).

BPE learns to merge frequent token pairs (a note and its duration, a whole chord, ``<sep> d4``)
into single tokens, so sequences get shorter and the model sees more music per block. The blog's
finding: merges must never cross a time-step boundary, so every merged token still stands at one
time step (and the beat/bar embeddings keep working). Here that is enforced by construction:

1. each base token id becomes one character (id ``i`` -> ``chr(0x4E00 + i)``);
2. a piece is pre-split into *actions*, the tokens sharing one time step (``Tokens.steps``):
   ``[t120 i0 n60 d4 n64 d4 <sep> d4]`` is one action; ``<sos>``/``<eos>`` stand alone;
3. Hugging Face ``tokenizers`` (Rust) learns merges *within* actions only, up to a vocabulary
   size. Base ids keep their ids (``0 .. len(vocab)-1``); merged tokens come after them.

Decoding is exact: each BPE id expands to its base ids (a table lookup), then the base decoder
takes over. The sampler's grammar for merged tokens is derived from the base grammar by walking
each merged token through it (`BPE.grammar_tables`), so constrained sampling still guarantees
decodable output. Tokenizers are saved as JSON, never pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import VocabError
from .grammar import ALLOWED_KINDS, C_GAP_DUR, NEXT_CONTEXT
from .index import Tokens
from .vocab import K_EOS, K_INSTR, K_NOTE, K_PAD, K_SOS, Vocab

BPE_FORMAT = "midigen.bpe"
BPE_VERSION = 1
CHAR_BASE = 0x4E00  # CJK block: ~20k printable characters, no whitespace among them
N_CONTEXTS = ALLOWED_KINDS.shape[0]


def _chars(ids: np.ndarray) -> str:
    return "".join(map(chr, (np.asarray(ids) + CHAR_BASE).tolist()))


def actions(ids: np.ndarray, steps: np.ndarray, vocab: Vocab) -> list[np.ndarray]:
    """Split a piece into actions: runs of tokens with one time step; specials stand alone."""
    ids = np.asarray(ids)
    steps = np.asarray(steps)
    kind = vocab.kind[ids]
    special = (kind == K_SOS) | (kind == K_EOS) | (kind == K_PAD)
    cut = np.ones(len(ids), bool)
    cut[1:] = (steps[1:] != steps[:-1]) | special[1:] | special[:-1]
    return np.split(ids, np.flatnonzero(cut)[1:])


class BPE:
    """A trained action-aware BPE tokenizer over a base `Vocab`."""

    def __init__(self, vocab: Vocab, tokenizer):
        self.base = vocab
        self.tokenizer = tokenizer
        table = tokenizer.get_vocab()
        n = len(table)
        self.pieces: list[np.ndarray] = [None] * n  # base ids of each BPE id
        for token, i in table.items():
            self.pieces[i] = np.array([ord(c) - CHAR_BASE for c in token], np.int64)
        for i in range(len(vocab)):
            if len(self.pieces[i]) != 1 or self.pieces[i][0] != i:
                raise VocabError("BPE ids of base tokens must equal their base ids")
        self.lengths = np.array([len(p) for p in self.pieces], np.int64)
        self.flat = np.concatenate(self.pieces)
        self.offsets = np.cumsum(self.lengths) - self.lengths
        self.pad_id, self.sos_id, self.eos_id = vocab.pad_id, vocab.sos_id, vocab.eos_id

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def dtype(self):
        return np.uint16 if len(self) <= 65536 else np.uint32

    # ------------------------------------------------------------ training
    @classmethod
    def train(cls, pieces, vocab: Vocab, vocab_size: int, min_frequency: int = 2) -> "BPE":
        """Learn merges from ``pieces`` (an iterable of `Tokens` or (ids, steps) pairs)."""
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        if vocab_size <= len(vocab):
            raise ValueError(f"vocab_size {vocab_size} must exceed the base vocabulary ({len(vocab)})")

        def sentences():
            for p in pieces:
                ids, steps = (p.ids, p.steps) if isinstance(p, Tokens) else p
                words = [_chars(a) for a in actions(ids, steps, vocab) if len(a) > 1]
                if words:
                    yield " ".join(words)

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # one word per action: no merge across
        alphabet = [chr(CHAR_BASE + i) for i in range(len(vocab))]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, min_frequency=min_frequency,
                                      show_progress=False, special_tokens=[], limit_alphabet=len(alphabet))
        tok.train_from_iterator(sentences(), trainer)
        return cls(vocab, tok)

    # ------------------------------------------------------------ encode / decode
    def encode(self, tokens: Tokens) -> Tokens:
        """Base tokens -> BPE tokens; each merged token keeps its action's time step."""
        acts = actions(tokens.ids, tokens.steps, self.base)
        enc = self.tokenizer.encode([_chars(a) for a in acts], is_pretokenized=True)
        ids = np.asarray(enc.ids, np.int64)
        # the step of each BPE token: the step of the first base token it stands for
        first = np.cumsum(self.lengths[ids]) - self.lengths[ids]
        steps = np.asarray(tokens.steps)[first]
        return Tokens(ids.astype(self.dtype), steps.astype(np.int32), dict(tokens.stats))

    def to_base(self, ids) -> np.ndarray:
        """BPE ids -> base ids (vectorised: one gather through a flat table)."""
        ids = np.asarray(ids, np.int64)
        n = self.lengths[ids]
        starts = np.repeat(self.offsets[ids], n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return self.flat[starts + within]

    def decode(self, ids, *, strict: bool = False):
        """BPE ids -> `Score`."""
        from . import decode

        return decode(self.to_base(ids), self.base, strict=strict)

    def notes_per_token(self) -> np.ndarray:
        """How many notes each (possibly merged) token stands for."""
        return np.array([(self.base.kind[p] == K_NOTE).sum() for p in self.pieces], np.int64)

    def to_tokens(self, ids) -> list[str]:
        return ["+".join(self.base.to_tokens(self.pieces[i])) for i in np.asarray(ids).tolist()]

    # ------------------------------------------------------------ grammar
    def grammar_tables(self):
        """Walk each BPE token through the base grammar from every context.

        Returns ``allowed`` (contexts, V): the token is grammatical there; ``next_ctx`` (contexts,
        V): the context after it; ``advance`` (contexts, V): time steps its gaps move on;
        ``needs_instrument`` (V): it holds a note before any instrument token of its own;
        ``gives_instrument`` (V): it holds an instrument token; ``has_eos`` (V).
        """
        V = len(self)
        kinds = self.base.kind
        values = self.base.value
        maxlen = int(self.lengths.max())
        pad = np.full((V, maxlen), -1, np.int64)
        for i, p in enumerate(self.pieces):
            pad[i, : len(p)] = p
        ctx = np.repeat(np.arange(N_CONTEXTS)[:, None], V, 1)  # (contexts, V)
        ok = np.ones((N_CONTEXTS, V), bool)
        advance = np.zeros((N_CONTEXTS, V), np.int64)
        for j in range(maxlen):  # walk position by position, all tokens and contexts at once
            present = pad[:, j] >= 0
            k = np.where(present, kinds[np.maximum(pad[:, j], 0)], 0)
            step_ok = ALLOWED_KINDS[ctx, k[None, :]]
            ok &= np.where(present[None, :], step_ok, True)
            new = NEXT_CONTEXT[ctx, k[None, :]]
            gap = (new == C_GAP_DUR) & present[None, :]
            # time may only move on at the very end of a merged token (an action ends with its
            # gap): a token like "d4+n67" right after a bare <sep> would read d4 as a gap and
            # put n67 a step later than the token's own step
            ok &= ~(gap & (j < self.lengths - 1)[None, :])
            advance += np.where(gap, values[np.maximum(pad[:, j], 0)][None, :], 0)
            ctx = np.where(present[None, :], new, ctx)
        k_all = np.where(pad >= 0, kinds[np.maximum(pad, 0)], -1)
        first_instr = np.where((k_all == K_INSTR).any(1), (k_all == K_INSTR).argmax(1), maxlen)
        first_note = np.where((k_all == K_NOTE).any(1), (k_all == K_NOTE).argmax(1), maxlen)
        needs = first_note < first_instr
        gives = (k_all == K_INSTR).any(1)
        has_eos = (k_all == K_EOS).any(1)
        return ok, ctx, advance, needs, gives, has_eos

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {"format": BPE_FORMAT, "version": BPE_VERSION, "vocab": self.base.to_dict(),
                "tokenizer": json.loads(self.tokenizer.to_str())}

    def save(self, path) -> Path:
        return atomic.write_json(path, self.to_dict(), indent=None)

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer") -> "BPE":
        from tokenizers import Tokenizer

        if not isinstance(d, dict) or d.get("format") != BPE_FORMAT:
            raise VocabError(f"{where}: not a midigen BPE tokenizer")
        if d.get("version") != BPE_VERSION:
            raise VocabError(f"{where}: BPE tokenizer version {d.get('version')} is not supported")
        vocab = Vocab.from_dict(d["vocab"], where=where)
        return cls(vocab, Tokenizer.from_str(json.dumps(d["tokenizer"])))

    @classmethod
    def load(cls, path) -> "BPE":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise VocabError(f"{p}: no such tokenizer file") from None
        except json.JSONDecodeError as exc:
            raise VocabError(f"{p}: not valid JSON ({exc})") from None
        return cls.from_dict(d, where=str(p))

    def __eq__(self, other) -> bool:
        return isinstance(other, BPE) and self.base == other.base and \
            self.tokenizer.get_vocab() == other.tokenizer.get_vocab()

    def __repr__(self) -> str:
        return f"BPE(size={len(self)}, base={len(self.base)}, longest merge={int(self.lengths.max())} tokens)"
