"""Byte-pair encoding over music tokens that respects the time dimension ("action" encoding).

BPE learns to merge frequent token pairs (a note and its duration, a whole chord, ``<sep> d4``)
into single tokens, so sequences get shorter and the model sees more music per block. The blog's
finding: merges must never cross a time-step boundary, so every merged token still stands at one
time step (and the beat/bar embeddings keep working). Here that is enforced by construction:

1. each base token id becomes one character (id ``i`` -> ``chr(0x4E00 + i)``);
2. a piece is pre-split into *actions*, the tokens sharing one time step (``Tokens.steps``):
   ``[t120 i0 n60 d4 n64 d4 <sep> d4]`` is one action; ``<sos>``/``<eos>`` stand alone;
3. Hugging Face ``tokenizers`` (Rust) learns merges *within* actions only, up to a vocabulary
   size. Base ids keep their ids (``0 .. n_base-1``); merged tokens come after them.

These are the helpers behind `Tokenizer.train_bpe` and `Tokenizer.encode`: the merges live in the
tokenizer (and its ``tokenizer.json``) as pairs of ids, and the Rust tokenizer is rebuilt from
them when a piece is to be merged. Decoding is exact: each id expands to its base ids (a table
lookup). The grammar of merged tokens is derived from the base grammar (`grammar.Grammar`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from ..errors import VocabError
from .grammar import C_GAP_DUR, contexts
from .index import Tokens
from .vocab import K_EOS, K_PAD, K_SOS, Vocab

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike, DTypeLike
    from tokenizers import Tokenizer as HFTokenizer

    from .tokenizer import Tokenizer

CHAR_BASE = 0x4E00  # CJK block: ~20k printable characters, no whitespace among them
LEGACY_FORMAT = "midigen.bpe"  # the BPE file of midigen before `Tokenizer` (read, never written)


def _chars(ids: ArrayLike) -> str:
    return "".join(map(chr, (np.asarray(ids) + CHAR_BASE).tolist()))


def actions(ids: np.ndarray, steps: np.ndarray, table: Vocab) -> list[np.ndarray]:
    """Split a piece into actions: runs of tokens with one time step; specials stand alone."""
    ids = np.asarray(ids)
    steps = np.asarray(steps)
    kind = table.kind[ids]
    special = (kind == K_SOS) | (kind == K_EOS) | (kind == K_PAD)
    cut = np.ones(len(ids), bool)
    cut[1:] = (steps[1:] != steps[:-1]) | special[1:] | special[:-1]
    return np.split(ids, np.flatnonzero(cut)[1:])


def _from_hf(model: dict, n_base: int):
    """(pieces of the merged tokens, merges as id pairs) from a trained HF BPE model's JSON."""
    vocab = model["vocab"]
    pieces: list = [None] * len(vocab)
    for token, i in vocab.items():
        pieces[i] = [ord(c) - CHAR_BASE for c in token]
    for i in range(n_base):
        if pieces[i] != [i]:
            raise VocabError("BPE ids of base tokens must equal their base ids")
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    return pieces[n_base:], [(vocab[a], vocab[b]) for a, b in merges]


def train(pieces: Iterable[Tokens | tuple[np.ndarray, np.ndarray]], table: Vocab, vocab_size: int,
          min_frequency: int = 2) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Learn merges from ``pieces`` (`Tokens` or (ids, steps) pairs of base ids).

    Returns ``(merged, merges)``: the base ids of each new token (ids ``len(table)`` on) and the
    merges in the order they were learnt, as pairs of ids.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if vocab_size <= len(table):
        raise ValueError(f"vocab_size {vocab_size} must exceed the base vocabulary ({len(table)})")

    def sentences():
        for p in pieces:
            ids, steps = (p.ids, p.steps) if isinstance(p, Tokens) else p
            words = [_chars(a) for a in actions(ids, steps, table) if len(a) > 1]
            if words:
                yield " ".join(words)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # one word per action: no merge across
    alphabet = [chr(CHAR_BASE + i) for i in range(len(table))]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, min_frequency=min_frequency,
                                  show_progress=False, special_tokens=[], limit_alphabet=len(alphabet))
    tok.train_from_iterator(sentences(), trainer)
    return _from_hf(json.loads(tok.to_str())["model"], len(table))


def build(pieces: list, merges: list) -> HFTokenizer:
    """The Rust BPE tokenizer for ``pieces`` (base ids of every id) and ``merges`` (id pairs)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {_chars(p): i for i, p in enumerate(pieces)}
    model = models.BPE(vocab=vocab, merges=[(_chars(pieces[a]), _chars(pieces[b])) for a, b in merges])
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def apply(hf: HFTokenizer, tokens: Tokens, table: Vocab, lengths: np.ndarray, dtype: DTypeLike) -> Tokens:
    """Base tokens -> merged tokens; each merged token keeps its action's time step."""
    acts = actions(tokens.ids, tokens.steps, table)
    enc = hf.encode([_chars(a) for a in acts], is_pretokenized=True)
    ids = np.asarray(enc.ids, np.int64)
    # the step of each merged token: the step of the first base token it stands for
    first = np.cumsum(lengths[ids]) - lengths[ids]
    steps = np.asarray(tokens.steps)[first]
    return Tokens(ids.astype(dtype), steps.astype(np.int32), dict(tokens.stats))


def read_legacy(d: dict, where: str) -> tuple[dict, list, list]:
    """(encoding config dict, merged pieces, merges) from a ``midigen.bpe`` file's JSON."""
    if d.get("version") != 1:
        raise VocabError(f"{where}: BPE tokenizer version {d.get('version')} is not supported")
    try:
        vocab = d["vocab"]
        model = d["tokenizer"]["model"]
        n_base = len(vocab["tokens"])
        merged, merges = _from_hf(model, n_base)
    except (KeyError, TypeError, ValueError) as exc:
        raise VocabError(f"{where}: malformed BPE tokenizer ({exc}); re-run `midigen prepare`") from None
    return vocab, merged, merges


def straddling(tokenizer: Tokenizer, ids: ArrayLike, base_steps: ArrayLike) -> np.ndarray:
    """Which tokens of ``ids`` cover base tokens of more than one time step (a bool per token),
    given the time step of every base token they stand for (``base_steps``). Action-aware merges
    never straddle; merges learnt blind to time do."""
    ids = np.asarray(ids, np.int64)
    if len(ids) == 0:
        return np.zeros(0, bool)
    lengths = tokenizer.lengths[ids]
    starts = np.cumsum(lengths) - lengths
    steps = np.asarray(base_steps)
    return np.maximum.reduceat(steps, starts) != np.minimum.reduceat(steps, starts)


def crossing_steps(tokenizer: Tokenizer, ids: ArrayLike) -> np.ndarray:
    """Positions of the tokens of ``ids`` inside which time moves on: a gap's duration that is not
    the last base token of its merged token. From the ids alone (no time steps needed): e.g. a
    sampled token that begins with a duration right after a bare ``<sep>``, where the corpus only
    had it as a note's duration."""
    ids = np.asarray(ids, np.int64)
    lengths = tokenizer.lengths[ids]
    gap_end = contexts(tokenizer.table.kind[tokenizer.to_base(ids)]) == C_GAP_DUR  # time moves on after these
    gap_end[np.cumsum(lengths) - 1] = False  # ... not counting those that end a token
    owner = np.repeat(np.arange(len(ids)), lengths)  # the token each base token belongs to
    return np.unique(owner[gap_end])
