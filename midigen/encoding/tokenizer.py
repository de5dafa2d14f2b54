"""`Tokenizer`: the one object that gives token ids their meaning.

It holds the `EncodingConfig`, the base token table (`vocab.Vocab`: specials, notes, durations,
instruments, tempi), the optional action-aware BPE merges (`bpe.py`) and the grammar of every id
(`grammar.Grammar`). It encodes MIDI to ids (merged where it has merges) and decodes ids back,
and it is saved as ONE versioned JSON file, ``tokenizer.json``, that prepared corpora and
checkpoints carry::

    {"format": "midigen.tokenizer", "version": 1, "encoding": {...}, "tokens": [...],
     "merges": [[left_id, right_id], ...], "hash": "<sha256 of the canonical config+tokens+merges>"}

Merged tokens are named by their base tokens joined with ``+`` (``n60+d4``). Files of midigen
before this one (``vocab.json``, with a ``midigen.bpe`` ``tokenizer.json`` beside it for BPE) still
load (`Tokenizer.load`); nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import atomic
from ..errors import MidiError, VocabError
from ..midi import Score, read_midi
from . import bpe
from .config import EncodingConfig
from .grammar import Grammar
from .index import Tokens, decode_position, encode_notes
from .position import sorted_notes
from .quantise import quantise
from .vocab import K_DUR, K_EOS, K_INSTR, K_NOTE, K_PAD, K_PART, K_SEP, K_SOS, K_TEMPO, K_VEL, Vocab

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike

FORMAT = "midigen.tokenizer"
VERSION = 1
FILENAME = "tokenizer.json"
LEGACY_VOCAB_FORMAT = "midigen.vocab"  # the vocab.json of midigen before `Tokenizer` (read only)

# The kind of a token, coarse and public (per-kind losses, plots). A duration right after <sep>
# is a gap's length: `Tokenizer.kinds` cannot tell (it is per id), `token_kinds` can (in context).
# Part tokens count as INSTRUMENT (they name what plays the note).
SPECIAL, NOTE, DURATION, GAP, TEMPO, INSTRUMENT, MERGED, VELOCITY = range(8)
KIND_NAMES = ("special", "note", "duration", "gap", "tempo", "instrument", "merged", "velocity")
_KIND_OF_BASE = np.zeros(10, np.int8)  # base kind (vocab.K_*) -> public kind
for _k, _v in {K_PAD: SPECIAL, K_SOS: SPECIAL, K_EOS: SPECIAL, K_SEP: GAP, K_NOTE: NOTE, K_DUR: DURATION,
               K_INSTR: INSTRUMENT, K_TEMPO: TEMPO, K_PART: INSTRUMENT, K_VEL: VELOCITY}.items():
    _KIND_OF_BASE[_k] = _v


def _as_score(score: Score | str | os.PathLike) -> Score:
    if isinstance(score, Score):
        return score
    if isinstance(score, (str, os.PathLike)):
        return read_midi(score)
    raise TypeError(f"expected a Score or a path to a MIDI file, got {type(score).__name__}")


def as_score(music: Score | str | os.PathLike | Tokens | ArrayLike, tokenizer: Tokenizer | None = None) -> Score:
    """A `Score` from what people hold: a `Score`, a MIDI file's path, or `Tokens` / token ids.

    Tokens decode with ``tokenizer`` if given, else with the tokenizer they carry (`Tokens.tokenizer`:
    set by `Tokenizer.encode` and by ``generate``); bare ids need ``tokenizer``.
    """
    if isinstance(music, Tokens):
        return music.to_score(tokenizer)
    ids = isinstance(music, (list, tuple)) and music and isinstance(music[0], (int, np.integer))
    if isinstance(music, np.ndarray) or ids:
        if tokenizer is None:
            raise TypeError("token ids need their tokenizer: pass tokenizer= (the Tokenizer that made them)")
        return tokenizer.decode(music)
    if isinstance(music, (Score, str, os.PathLike)):
        return _as_score(music)
    raise TypeError(f"expected a Score, a MIDI file path or Tokens, got {type(music).__name__}")


class Tokenizer:
    """Encoding config + base vocabulary + optional BPE merges + grammar, saved as one file.

    ``Tokenizer(config)`` is the base tokenizer of a config (the default config if none);
    `train_bpe` returns one with merges; `load` reads one back.
    """

    def __init__(self, config: EncodingConfig | None = None, merged: Iterable[ArrayLike] = (),
                 merges: Iterable[tuple[int, int]] = ()):
        self.config = config or EncodingConfig()
        self.table = table = Vocab(self.config)  # the base tokens (ids 0 .. n_base-1)
        self.n_base = n = len(table)
        self.merges: list[tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        pieces = [np.asarray(p, np.int64) for p in merged]
        self.tokens: list[str] = table.tokens + ["+".join(table.tokens[i] for i in p) for p in pieces]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise VocabError("duplicate tokens (a merged token listed twice?)")
        maxlen = max([1] + [len(p) for p in pieces])
        self._pieces = np.full((len(self.tokens), maxlen), -1, np.int64)  # base ids of each id
        self._pieces[:n, 0] = np.arange(n)
        for i, p in enumerate(pieces):
            self._pieces[n + i, : len(p)] = p
        self._lengths = (self._pieces >= 0).sum(1)
        self._flat = self._pieces[self._pieces >= 0]
        self._offsets = np.cumsum(self._lengths) - self._lengths
        self.pad_id, self.sos_id, self.eos_id, self.sep_id = table.pad_id, table.sos_id, table.eos_id, table.sep_id
        kinds = _KIND_OF_BASE[table.kind]
        self.kinds: np.ndarray = np.concatenate([kinds, np.full(len(pieces), MERGED, np.int8)])
        """The kind of every id (`KIND_NAMES`); a duration is DURATION even where it is a gap."""

    # ------------------------------------------------------------ sizes and names
    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def has_merges(self) -> bool:
        return len(self.tokens) > self.n_base

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """The smallest unsigned dtype that holds every id (uint16 for any realistic config)."""
        return np.uint16 if len(self) <= 65536 else np.uint32

    @property
    def lengths(self) -> np.ndarray:
        """How many base tokens each id stands for (1 for base ids)."""
        return self._lengths

    @functools.cached_property
    def pieces(self) -> list[np.ndarray]:
        """The base ids each id stands for (``[i]`` for a base id ``i``)."""
        return [self._pieces[i, : self._lengths[i]] for i in range(len(self))]

    def to_ids(self, tokens: Iterable[str]) -> np.ndarray:
        """Token strings (a list, or one space-separated string) to ids."""
        if isinstance(tokens, str):
            tokens = tokens.replace("><", "> <").split()
        try:
            return np.asarray([self.index[t] for t in tokens], np.int64)
        except KeyError as exc:
            raise VocabError(f"unknown token {exc.args[0]!r}") from None

    def to_tokens(self, ids: ArrayLike) -> list[str]:
        return [self.tokens[i] for i in np.asarray(ids).tolist()]

    def to_base(self, ids: ArrayLike) -> np.ndarray:
        """Ids -> base ids (merged tokens expanded; vectorised: one gather through a flat table)."""
        ids = np.asarray(ids, np.int64)
        if not self.has_merges:
            return ids
        n = self._lengths[ids]
        starts = np.repeat(self._offsets[ids], n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return self._flat[starts + within]

    def notes_per_token(self) -> np.ndarray:
        """How many notes each id stands for (1 for a note token, more for a merged chord)."""
        return ((self.table.kind[np.maximum(self._pieces, 0)] == K_NOTE) & (self._pieces >= 0)).sum(1)

    def token_kinds(self, ids: ArrayLike) -> np.ndarray:
        """The kind (`KIND_NAMES`) of each token of a sequence, in context (vectorised).

        As `kinds`, except that a duration right after ``<sep>`` (or after a merged token that
        ends with ``<sep>``) is a GAP: the length of a silence, not of a note.
        """
        ids = np.asarray(ids, np.int64)
        kinds = self.kinds[ids].copy()
        if len(ids) > 1:
            last = self._pieces[ids[:-1], self._lengths[ids[:-1]] - 1]  # last base token of each
            gap = (kinds[1:] == DURATION) & (self.table.kind[last] == K_SEP)
            kinds[1:][gap] = GAP
        return kinds

    @functools.cached_property
    def grammar(self) -> Grammar:
        """The grammar's tables for every id (samplers, the strict decoder, `explain`)."""
        return Grammar(self.table, self._pieces)

    # ------------------------------------------------------------ encode / decode
    def encode(self, score: Score | str | os.PathLike) -> Tokens:
        """MIDI file or `Score` -> `Tokens` (ids, per-token time steps, stats), merged if it has merges.

        Raises `MidiError` if the file is unreadable or nothing in it can be encoded.
        """
        toks = self.encode_base(score)
        return self.apply_bpe(toks) if self.has_merges else toks  # (both carry this tokenizer)

    def encode_base(self, score: Score | str | os.PathLike) -> Tokens:
        """MIDI file or `Score` -> base `Tokens` (no merges applied)."""
        score = _as_score(score)
        notes = sorted_notes(quantise(score, self.config))
        if notes.stats["encoded_notes"] == 0:
            st = notes.stats
            raise MidiError(
                score.path,
                f"no encodable notes ({st['notes']} notes; {st['dropped_pitch_range']} outside the "
                f"pitch range, {st.get('dropped_drums', 0)} drum notes in an instrument-free encoding)",
            )
        toks = encode_notes(notes, self)
        toks.tokenizer = self  # (base ids mean the same in this tokenizer)
        return toks

    def apply_bpe(self, tokens: Tokens) -> Tokens:
        """Base `Tokens` -> merged `Tokens` (each merged token keeps its action's time step)."""
        if not self.has_merges:
            return tokens
        merged = bpe.apply(self._hf, tokens, self.table, self._lengths, self.dtype)
        merged.tokenizer = self
        merged.part_names = tokens.part_names
        return merged

    @functools.cached_property
    def _hf(self):
        return bpe.build(self.pieces, self.merges)

    def decode(self, ids: ArrayLike, *, strict: bool = False, part_names: Iterable[str] = ()) -> Score:
        """Token ids -> `Score` (tempo from tempo tokens, instruments from instrument tokens, parts
        from part tokens, velocities from velocity tokens).

        ``strict=True`` raises `DecodeError` at the first token the grammar does not allow. Tokens
        carry no part names: ``part_names`` names the parts (`Tokens` pass the source's), else a
        part is named after its number and instrument.
        """
        if isinstance(ids, Tokens):
            part_names = part_names or ids.part_names
            ids = ids.ids
        return decode_position(ids, self, strict=strict, part_names=tuple(part_names)).to_score()

    # ------------------------------------------------------------ BPE
    def train_bpe(self, pieces: Iterable[Tokens | tuple[np.ndarray, np.ndarray]], vocab_size: int,
                  min_frequency: int = 2) -> Tokenizer:
        """A NEW tokenizer with action-aware merges learnt from ``pieces`` (base `Tokens` or
        (ids, steps) pairs), up to ``vocab_size`` ids; this one is left as it is."""
        if self.has_merges:
            raise ValueError("this tokenizer has merges already; train on its `without_merges()`")
        merged, merges = bpe.train(pieces, self.table, vocab_size, min_frequency)
        return Tokenizer(self.config, merged, merges)

    def without_merges(self) -> Tokenizer:
        """The base tokenizer of the same config (itself if it has no merges)."""
        return Tokenizer(self.config) if self.has_merges else self

    # ------------------------------------------------------------ file
    @functools.cached_property
    def hash(self) -> str:
        """sha256 of the canonical JSON of config, tokens and merges: equal hashes, equal meaning."""
        body = {"encoding": self.config.to_dict(), "tokens": self.tokens, "merges": [list(m) for m in self.merges]}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.hash == other.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        merged = f", merges={len(self.merges)}, longest={int(self._lengths.max())}" if self.has_merges else ""
        return (f"Tokenizer(size={len(self)}, instruments={self.config.instruments}, tempo={self.config.tempo}"
                f"{merged})")

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "encoding": self.config.to_dict(), "tokens": self.tokens,
                "merges": [list(m) for m in self.merges], "hash": self.hash}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` into the folder ``path`` (or to ``path`` itself if it ends in
        ``.json``), atomically. Returns the file's path."""
        p = Path(path)
        if p.suffix != ".json":
            p = p / FILENAME
        return atomic.write_json(p, self.to_dict(), indent=None)

    @classmethod
    def from_dict(cls, d: dict, expected: EncodingConfig | None = None, where: str = "tokenizer") -> Tokenizer:
        """A tokenizer from its JSON (also the legacy ``midigen.vocab`` and ``midigen.bpe`` ones)."""
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt == LEGACY_VOCAB_FORMAT:
            if d.get("version") != 1:
                raise VocabError(f"{where}: vocabulary version {d.get('version')} is not supported")
            return cls._checked(d.get("encoding"), d.get("tokens"), [], expected, where)
        if fmt == bpe.LEGACY_FORMAT:
            vocab, merged, merges = bpe.read_legacy(d, where)
            base = cls._checked(vocab.get("encoding"), vocab.get("tokens"), [], expected, where)
            return cls(base.config, merged, merges)
        if fmt != FORMAT:
            raise VocabError(f"{where}: not a midigen tokenizer (format is {fmt!r})")
        if d.get("version") != VERSION:
            raise VocabError(f"{where}: tokenizer version {d.get('version')} is not supported (expected {VERSION})")
        body = {"encoding": d.get("encoding"), "tokens": d.get("tokens"), "merges": d.get("merges")}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        if digest != d.get("hash"):
            raise VocabError(f"{where}: content hash mismatch: the file was edited or is corrupt "
                             f"(re-run `midigen prepare`, or restore the file)")
        return cls._checked(d["encoding"], d["tokens"], d["merges"], expected, where)

    @classmethod
    def _checked(cls, encoding: dict, tokens: list[str], merges: list, expected: EncodingConfig | None,
                 where: str) -> Tokenizer:
        try:
            cfg = EncodingConfig.from_dict(encoding)
        except (KeyError, TypeError, ValueError) as exc:
            raise VocabError(f"{where}: bad encoding config: {exc}") from None
        if expected is not None and cfg != expected:
            diff = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in cfg.diff(expected).items())
            raise VocabError(f"{where}: written by a different encoding configuration ({diff})")
        base = Vocab(cfg)
        n = len(base)
        if not isinstance(tokens, list) or tokens[:n] != base.tokens:
            raise VocabError(f"{where}: token list does not match its encoding config (edited or corrupt file)")
        try:
            merged = [[base.index[t] for t in name.split("+")] for name in tokens[n:]]
        except (KeyError, AttributeError):
            raise VocabError(f"{where}: a merged token is not made of base tokens (corrupt file)") from None
        tok = cls(cfg, merged, merges)
        for a, b in tok.merges:
            if not (0 <= a < len(tok) and 0 <= b < len(tok)) or f"{tok.tokens[a]}+{tok.tokens[b]}" not in tok.index:
                raise VocabError(f"{where}: merge ({a}, {b}) does not make a listed token (corrupt file)")
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike, expected: EncodingConfig | None = None) -> Tokenizer:
        """Read a tokenizer: a folder (a prepared corpus, a checkpoint) or the JSON file itself.

        A folder of the old layout (``vocab.json``, and a ``midigen.bpe`` ``tokenizer.json`` for
        BPE) loads too. With ``expected``, fail clearly if it was made under another config.
        """
        p = Path(path)
        if p.is_dir():
            if (p / FILENAME).is_file():
                p = p / FILENAME
            elif (p / "vocab.json").is_file():
                p = p / "vocab.json"  # the old layout
            else:
                raise VocabError(f"{p}: no {FILENAME} here (prepare the corpus with `midigen prepare`)")
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise VocabError(f"{p}: no such tokenizer file") from None
        except json.JSONDecodeError as exc:
            raise VocabError(f"{p}: not valid JSON ({exc})") from None
        return cls.from_dict(d, expected, where=str(p))
