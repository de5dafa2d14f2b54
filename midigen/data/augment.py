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

**Drums.** A note is a drum note when the last instrument token before it is ``drums``. Within a
row that is a running maximum over the row's instrument tokens; for the notes before a row's first
instrument token the context lies before the row. One pass over the corpus (`_scan`, vectorised,
at construction) records the positions where the context switches between drums and pitched
instruments (few: none without drums), so the context before a row is one binary search at the
row's start in the corpus (the batch's ``start``), all rows at once on the batch's device.

BPE corpora are refused: a merged token may hold notes of several instruments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..encoding.vocab import K_INSTR, K_NOTE, K_TEMPO
from ..midi import DRUMS

if TYPE_CHECKING:
    from ..encoding.vocab import Vocab
    from .corpus import PreparedCorpus

IGNORE_INDEX = -100
SCAN_CHUNK = 1 << 22  # tokens per chunk of the corpus scan (bounded memory)
_STREAM = 0x61756780  # separates the augmentation's random stream from the batches' (same seed)
PARTS_REFUSED = ("augmentation does not follow part tokens yet (drum parts would be transposed); prepare "
                 "without --parts or train without --transpose/--tempo-shift")
BPE_REFUSED = ("augmentation needs a base-token corpus; prepare without --bpe-vocab or train without "
               "--transpose")


def _host_tokens(corpus: PreparedCorpus) -> np.ndarray:
    """The tokens of ``corpus`` as an array numpy can read (a memmap for a corpus on a device)."""
    if not torch.is_tensor(corpus.tokens):
        return corpus.tokens
    from .corpus import PreparedCorpus

    return PreparedCorpus(corpus.path, corpus.split, "disk").tokens


def _scan(tokens: np.ndarray, starts: np.ndarray, table: Vocab, n_pieces: int):
    """One pass over the corpus: the lowest and highest pitched note of each piece, and the
    positions where the instrument context switches between drums and pitched instruments.

    Returns ``(low, high, switches)``: ``low``/``high`` are -1 for a piece without pitched notes;
    the context at position ``i`` is drums iff an odd number of switches lie at or before ``i``.
    """
    kind, value = table.kind, table.value
    low = np.full(n_pieces, 1 << 30, np.int64)
    high = np.full(n_pieces, -1, np.int64)
    switches, drums = [], False  # (the context before any instrument token: pitched)
    for c0 in range(0, len(tokens), SCAN_CHUNK):
        ids = np.asarray(tokens[c0 : c0 + SCAN_CHUNK]).astype(np.int64)
        k = kind[ids]
        instr = np.flatnonzero(k == K_INSTR)
        flag = value[ids[instr]] == DRUMS  # the context each instrument token sets
        before = np.concatenate([[drums], flag[:-1]])
        switches.append(c0 + instr[flag != before])
        notes = np.flatnonzero(k == K_NOTE)
        last = np.searchsorted(instr, notes) - 1  # the instrument token before each note
        is_drum = np.where(last >= 0, flag[np.maximum(last, 0)], drums) if len(flag) else np.full(len(notes), drums)
        drums = bool(flag[-1]) if len(flag) else drums
        notes = notes[~is_drum]
        if not len(notes):
            continue
        pitch = value[ids[notes]]
        piece = np.searchsorted(starts, c0 + notes, side="right") - 1  # sorted: reduce by runs
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
        if tokenizer.config.parts:  # (drums are found from the last instrument token; with parts that
            raise ValueError(PARTS_REFUSED)  # token only declares a part, so drum parts would move)
        for name, v in (("transpose", transpose), ("tempo_shift", tempo_shift)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        self.corpus, self.transpose, self.tempo_shift, self.seed = corpus, int(transpose), int(tempo_shift), int(seed)
        table, cfg = tokenizer.table, tokenizer.config
        self.n_tempi = len(cfg.tempo_values()) if cfg.tempo else 0
        if tempo_shift and not cfg.tempo:
            raise ValueError("tempo_shift needs tempo tokens, and this corpus's encoding has none (tempo=False)")
        self._starts = np.asarray(corpus.starts, np.int64)
        low, high, self._switches = _scan(_host_tokens(corpus), self._starts, table, len(self._starts))
        R = self.transpose
        pitched = high >= 0
        self.shift_low = np.where(pitched, np.maximum(-R, cfg.min_pitch - low), -R)  # (R = 0: all 0)
        self.shift_high = np.where(pitched, np.minimum(R, cfg.max_pitch - high), R)
        self.limited = (self.shift_low > -R) | (self.shift_high < R)
        self.pieces_limited = int(np.count_nonzero(self.limited))
        """Pieces whose shift range was limited so that none of their notes leaves the pitch range."""
        # per-id tables, moved to the batches' device on first use
        self._tables_np = {"kind": table.kind.astype(np.int64), "value": table.value,
                           "drums": (table.kind == K_INSTR) & (table.value == DRUMS), "limited": self.limited,
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
            notes &= ~self._drum_context(batch["start"], w, kind, t)
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

    def _drum_context(self, start: torch.Tensor, w: torch.Tensor, kind: torch.Tensor, t: dict) -> torch.Tensor:
        """(B, L+1) bool: the last instrument token at or before each token is ``drums`` (rows
        starting at ``start`` in the corpus, -1 for a row of padding)."""
        B, L1 = w.shape
        n_sw = torch.searchsorted(t["switches"], start.clamp(min=0))  # switches before the row
        before = (n_sw % 2 == 1) & (start >= 0)
        pos = torch.arange(L1, device=w.device).expand(B, L1)
        last = torch.where(kind == K_INSTR, pos, -1).cummax(dim=1).values
        inside = t["drums"][w.gather(1, last.clamp(min=0))]
        return torch.where(last >= 0, inside, before[:, None])
