"""Augmentation on the fly: a random transposition (and tempo shift) per piece, batch by batch.

`Augmenter` takes a training batch (the dict of `midigen.data.batching`) and returns it as if each
piece had been transposed by ``k`` semitones before it was encoded: every note token of a pitched
instrument moves ``k`` ids up (note ids are ordered by pitch), drum notes stay, and with a tempo
shift every tempo token moves ``t`` bins (clipped to the bin range). The corpus is never copied.

**Exact.** A transposed batch equals the batch of the corpus prepared from the transposed scores
(the tests hold it to that on real chorales and band arrangements with drums): the encoder sorts a
step's notes by (instrument, pitch), and one shift per piece for all pitched notes keeps that
order. So that no note leaves the pitch range, each piece's shift is drawn from its own range
``[-transpose, transpose]`` limited by its lowest and highest pitched note (`pieces_limited`
counts the pieces so limited); nothing is ever dropped, so the windows keep their lengths.

**Seeded.** Piece ``p``'s shifts in epoch ``e`` are a pure function of (seed, e, p) (`shifts`),
so a resumed run sees the same augmented batches as an uninterrupted one.

**Drums.** A note is a drum note when the last opener before it opens drums: an instrument token
``drums``, or with part tokens a part that its piece declared as drums (``drums p3`` at the part's
first note; a part token alone does not say). One pass over the corpus (`_scan`, vectorised, at
construction) records the positions where the context switches between drums and pitched
instruments (few: none without drums), so the context of every token of a batch is one binary
search of its place in the corpus (the row's ``start`` plus its column), on the batch's device.

BPE corpora are refused: a merged token may hold notes of several instruments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..encoding.vocab import K_INSTR, K_NOTE, K_PART, K_TEMPO
from ..midi import DRUMS

if TYPE_CHECKING:
    from ..encoding.vocab import Vocab
    from .corpus import PreparedCorpus

IGNORE_INDEX = -100
SCAN_CHUNK = 1 << 22  # tokens per chunk of the corpus scan (bounded memory)
_STREAM = 0x61756780  # separates the augmentation's random stream from the batches' (same seed)
BPE_REFUSED = ("augmentation needs a base-token corpus; prepare without --bpe-vocab or train without "
               "--transpose")


def _host_tokens(corpus: PreparedCorpus) -> np.ndarray:
    """The tokens of ``corpus`` as an array numpy can read (a memmap for a corpus on a device)."""
    if not torch.is_tensor(corpus.tokens):
        return corpus.tokens
    from .corpus import PreparedCorpus

    return PreparedCorpus(corpus.path, corpus.split, "disk").tokens


def _opener_flags(ids: np.ndarray, k: np.ndarray, value: np.ndarray, nxt: np.ndarray, piece_of: Callable, parts: bool,
                  drum_parts: list) -> tuple[np.ndarray, np.ndarray]:
    """The opener tokens of a chunk (instrument tokens, or with parts the part tokens) and whether
    each opens drums. With parts, a part token opens drums when its piece declared that part with
    ``drums`` (``drums p{k}`` at the part's first note; declarations precede every use), so the
    (piece, part) keys of drum parts accumulate in ``drum_parts`` across chunks. ``ids`` may run
    one token past the chunk (the part token of a declaration at its end)."""
    n = len(k)
    if not parts:
        at = np.flatnonzero(k == K_INSTR)
        return at, value[ids[at]] == DRUMS
    decl = np.flatnonzero((k == K_INSTR) & (nxt == K_PART) & (value[ids[:n]] == DRUMS))
    if len(decl):
        drum_parts.append(piece_of(decl) * 256 + value[ids[decl + 1]])
    at = np.flatnonzero(k == K_PART)
    if not drum_parts:
        return at, np.zeros(len(at), bool)
    return at, np.isin(piece_of(at) * 256 + value[ids[at]], np.concatenate(drum_parts))


def _scan(tokens: np.ndarray, starts: np.ndarray, table: Vocab, n_pieces: int, parts: bool):
    """One pass over the corpus: the lowest and highest pitched note of each piece, and the
    positions where the context switches between drums and pitched instruments.

    The context of a token is set by the last opener token before it: an instrument token
    (``drums`` or a program), or with parts a part token (drums when its piece declared that part
    with ``drums``). Returns ``(low, high, switches)``: ``low``/``high`` are -1 for a piece without
    pitched notes; the context at position ``i`` is drums iff an odd number of ``switches`` lie at
    or before ``i``.
    """
    kind, value = table.kind, table.value
    low = np.full(n_pieces, 1 << 30, np.int64)
    high = np.full(n_pieces, -1, np.int64)
    switches, drums, drum_parts = [], False, []  # (the context before any opener: pitched)
    for c0 in range(0, len(tokens), SCAN_CHUNK):
        ext = np.asarray(tokens[c0 : c0 + SCAN_CHUNK + 1]).astype(np.int64)  # (+1: the token after the chunk)
        n = min(SCAN_CHUNK, len(ext))
        ids, k, nxt = ext[:n], kind[ext[:n]], np.append(kind[ext[1:]], -1)[:n]

        def piece_of(pos: np.ndarray, c0: int = c0) -> np.ndarray:
            return np.searchsorted(starts, c0 + pos, side="right") - 1

        at, flag = _opener_flags(ext, k, value, nxt, piece_of, parts, drum_parts)
        before = np.concatenate([[drums], flag[:-1]])
        switches.append(c0 + at[flag != before])
        notes = np.flatnonzero(k == K_NOTE)
        last = np.searchsorted(at, notes) - 1  # the opener before each note
        is_drum = np.where(last >= 0, flag[np.maximum(last, 0)], drums) if len(flag) else np.full(len(notes), drums)
        drums = bool(flag[-1]) if len(flag) else drums
        notes = notes[~is_drum]
        if not len(notes):
            continue
        pitch = value[ids[notes]]
        piece = piece_of(notes)  # sorted: reduce by runs
        first = np.flatnonzero(np.concatenate([[True], piece[1:] != piece[:-1]]))
        p = piece[first]
        low[p] = np.minimum(low[p], np.minimum.reduceat(pitch, first))
        high[p] = np.maximum(high[p], np.maximum.reduceat(pitch, first))
    low[high < 0] = -1
    return low, high, np.concatenate(switches) if switches else np.zeros(0, np.int64)


class Augmenter:
    """Transpose each piece of a batch by a random number of semitones, and shift its tempo.

    ``transpose=6``: each piece moves by a uniform number of semitones in [-6, 6], limited per
    piece so that no note leaves the pitch range; ``tempo_shift=2``: tempo tokens move by a uniform
    number of bins in [-2, 2] per piece, clipped to the bin range. Drum notes never move. One new
    draw per piece and epoch, from ``seed``. ``augmenter(batch, epoch)`` returns the augmented batch
    (a new dict; x and y augmented alike, the rest untouched), for a batch of
    `midigen.data.batching` (it reads ``piece`` and ``start``). Counts accumulate in `counts`
    (`take_counts` hands them over and starts again).
    """

    def __init__(self, corpus: PreparedCorpus, transpose: int = 0, tempo_shift: int = 0, seed: int = 0):
        tokenizer = corpus.tokenizer
        if tokenizer.has_merges:
            raise ValueError(BPE_REFUSED)
        for name, v in (("transpose", transpose), ("tempo_shift", tempo_shift)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        self.corpus, self.transpose, self.tempo_shift, self.seed = corpus, int(transpose), int(tempo_shift), int(seed)
        table, cfg = tokenizer.table, tokenizer.config
        self.n_tempi = len(cfg.tempo_values()) if cfg.tempo else 0
        if tempo_shift and not cfg.tempo:
            raise ValueError("tempo_shift needs tempo tokens, and this corpus's encoding has none (tempo=False)")
        self._starts = np.asarray(corpus.starts, np.int64)
        low, high, self._switches = _scan(_host_tokens(corpus), self._starts, table, len(self._starts), cfg.parts)
        R = self.transpose
        pitched = high >= 0
        self.shift_low = np.where(pitched, np.maximum(-R, cfg.min_pitch - low), -R)  # (R = 0: all 0)
        self.shift_high = np.where(pitched, np.minimum(R, cfg.max_pitch - high), R)
        self.limited = (self.shift_low > -R) | (self.shift_high < R)
        self.pieces_limited = int(np.count_nonzero(self.limited))
        """Pieces whose shift range was limited so that none of their notes leaves the pitch range."""
        # per-id tables, moved to the batches' device on first use
        self._tables_np = {"kind": table.kind.astype(np.int64), "value": table.value, "limited": self.limited,
                           "switches": self._switches}
        self._tempo_offset = table.tempo_offset
        self._tables: dict = {}
        self._epoch_cache: tuple | None = None
        self.counts = dict.fromkeys(("notes_shifted", "notes_dropped", "shifts_limited", "tempo_clipped"), 0)
        """Totals since the last `take_counts`: pitched notes moved, notes dropped (always 0: shifts
        are limited instead), pieces met in batches whose shift range was limited, tempo tokens
        clipped at the edge of the bin range."""

    def __repr__(self) -> str:
        return (f"Augmenter(transpose={self.transpose}, tempo_shift={self.tempo_shift}, seed={self.seed}, "
                f"pieces_limited={self.pieces_limited}/{len(self._starts)})")

    # ------------------------------------------------------------ draws
    def shifts(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(semitones, tempo bins) of every piece in ``epoch``: a pure function of (seed, epoch)."""
        rng = np.random.default_rng([self.seed, int(epoch), _STREAM])
        pitch = rng.integers(self.shift_low, self.shift_high + 1)
        tempo = rng.integers(-self.tempo_shift, self.tempo_shift + 1, size=len(self._starts))
        return pitch.astype(np.int64), tempo.astype(np.int64)

    def take_counts(self) -> dict:
        """The counts since the last call (and `pieces_limited`), then zero them."""
        out = {**self.counts, "pieces_limited": self.pieces_limited}
        self.counts = dict.fromkeys(self.counts, 0)
        return out

    # ------------------------------------------------------------ batches
    def __call__(self, batch: dict, epoch: int) -> dict:
        """The batch with each piece shifted by its draws of ``epoch`` (`shifts`)."""
        dev = batch["x"].device
        if self._epoch_cache is None or self._epoch_cache[:2] != (epoch, dev):  # once an epoch, to the device
            self._epoch_cache = (epoch, dev, *(torch.as_tensor(a, device=dev) for a in self.shifts(epoch)))
        return self.apply(batch, self._epoch_cache[2], self._epoch_cache[3])

    def apply(
        self, batch: dict, pitch_shift: np.ndarray | torch.Tensor, tempo_shift: np.ndarray | torch.Tensor | None = None
    ) -> dict:
        """The batch with piece ``p`` transposed by ``pitch_shift[p]`` semitones and its tempo
        tokens moved by ``tempo_shift[p]`` bins (arrays or tensors over all pieces of the corpus)."""
        x, y, piece = batch["x"], batch["y"], batch["piece"]
        dev = x.device
        t = self._device_tables(dev)
        # the row's tokens and the one after it (y's last), so that y gets the same moves as x
        w = torch.cat([x, y[:, -1:].clamp(min=0)], dim=1)
        pw = torch.cat([piece, piece[:, -1:]], dim=1)
        valid = pw >= 0
        kind = t["kind"][w]
        pc = pw.clamp(min=0)
        delta = torch.zeros_like(w)
        notes = (kind == K_NOTE) & valid
        if len(self._switches):  # (no switch: no drums in the corpus)
            notes &= ~self._drum_context(batch["start"], w, t)
        k = torch.as_tensor(pitch_shift, dtype=torch.int64, device=dev)[pc]
        delta = torch.where(notes, k, delta)
        self.counts["notes_shifted"] += int((notes[:, :-1] & (k[:, :-1] != 0)).sum())
        if self.pieces_limited:
            used = piece[piece >= 0].unique()
            self.counts["shifts_limited"] += int(t["limited"][used].sum())
        if self.n_tempi and tempo_shift is not None:
            tempo = (kind == K_TEMPO) & valid
            v = t["value"][w] + torch.as_tensor(tempo_shift, dtype=torch.int64, device=dev)[pc]
            clipped = tempo & ((v < 0) | (v >= self.n_tempi))
            self.counts["tempo_clipped"] += int(clipped[:, :-1].sum())
            delta = torch.where(tempo, self._tempo_offset + v.clamp(0, self.n_tempi - 1) - w, delta)
        out = dict(batch)
        out["x"] = x + delta[:, :-1]
        out["y"] = torch.where(y == IGNORE_INDEX, y, y + delta[:, 1:])
        return out

    def _device_tables(self, dev: torch.device) -> dict:
        if dev not in self._tables:
            self._tables[dev] = {k: torch.as_tensor(v, device=dev) for k, v in self._tables_np.items()}
        return self._tables[dev]

    def _drum_context(self, start: torch.Tensor, w: torch.Tensor, t: dict) -> torch.Tensor:
        """(B, L+1) bool: the token at each place of the rows starting at ``start`` in the corpus
        (-1 for a row of padding) is in a drum context: an odd number of switches at or before it."""
        pos = start[:, None] + torch.arange(w.shape[1], device=w.device)
        n_sw = torch.searchsorted(t["switches"], pos.contiguous(), right=True)
        return (n_sw % 2 == 1) & (start[:, None] >= 0)
