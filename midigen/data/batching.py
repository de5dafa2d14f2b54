"""Batching: three ways to cut a prepared corpus into ``(x, y)`` training batches.

A language model learns to predict the next token, so every batch holds inputs ``x`` of shape
``(batch_size, seq_len)`` and targets ``y`` of the same shape: ``y[b, j]`` is the token that
follows ``x[b, j]``. The corpus of one split is a flat array of pieces written back to back
(``<sos> ... <eos> <sos> ... <eos> ...``, see `PreparedCorpus`); the three strategies differ in
*which* stretches of that array become rows, and so in what the model can learn and what it costs.

`RandomWindows` -- the split as one long sequence
    Each row is a window of ``seq_len + 1`` tokens starting anywhere (uniformly at random);
    ``x = w[:-1]``, ``y = w[1:]``. A window may run across the ``<eos> <sos>`` boundary between
    two pieces: the model then learns that after ``<eos>`` comes a fresh ``<sos>`` and that what
    came before is unrelated. Nothing is padded, every position is a training signal, and short
    pieces cost nothing extra, so this is the cheapest, most efficient way to train a plain GPT
    with a fixed context. The price: a model never sees a piece from its very start more often
    than chance, and it cannot learn structure longer than ``seq_len``.

`PerSong` -- one piece per row
    Each row is one piece, cropped to ``seq_len + 1`` tokens (from its start, or at a random
    offset with ``random_crop=True``) or right-padded with ``<pad>``. Every row starts at the
    piece's ``<sos>`` (unless randomly cropped), so the model learns how pieces *begin*, and
    rows never mix pieces. The trade-off is the *tail*: a piece longer than ``seq_len + 1`` loses
    everything after the crop (the same tail every epoch, unless ``random_crop``), and a piece
    shorter than that wastes the rest of its row on padding, where ``y = -100`` so the loss
    ignores it. `padding_fraction()` says how much of the compute is wasted; if it is large,
    lower ``seq_len`` or use another strategy.

`Contiguous` -- stream each piece through consecutive batches (for recurrent memories)
    Transformer-XL's segment recurrence and a kNN memory both carry state from one batch to the
    next, row by row. For that state to mean anything, row ``b`` of batch ``t + 1`` must continue
    row ``b`` of batch ``t``. So each row streams whole pieces, segment after segment: a piece of
    ``n`` tokens has ``n - 1`` targets and is cut into ``ceil((n - 1) / seq_len)`` segments
    (segment ``k``: ``x = t[kL : kL+L]``, ``y = t[kL+1 : kL+L+1]``); only its last segment is
    padded, and a segment never mixes two pieces. When a row moves on to a new piece, its
    ``reset`` flag is True in that batch: the model must clear that row's memory (it is also True
    for every row in the first batch of an epoch). Every target of every piece is seen exactly
    once per epoch, in order. Pieces are assigned to rows up front, longest first to the row
    with the least work so far, so rows end at nearly the same batch; rows that run out early
    get all-padding segments (``x = <pad>``, ``y = -100``, ``piece = -1``, ``reset`` True on the
    first one) until the longest row is done. Nothing is dropped, at the price of that padding
    plus the padding in each piece's last segment (`padding_fraction()`).

Which one? Start with `RandomWindows` for a plain GPT (no waste, simplest); use `PerSong` when
piece openings matter or for evaluation per piece; use `Contiguous` for models with memory
across segments (Transformer-XL, kNN memory), and for evaluation that must score every token
exactly once.

Every batch is a dict of torch int64 tensors (``reset``: bool):

``x``      (B, L) input token ids (``<pad>`` = 0 where there is no input)
``y``      (B, L) target ids: ``x`` shifted by one; -100 where there is no target (PyTorch's
           ``CrossEntropyLoss(ignore_index=-100)`` convention)
``steps``  (B, L) the time step of each input token (``corpus.steps``), 0 on padding
``piece``  (B, L) index of the piece each input token comes from, -1 on padding
``start``  (B,) where each row starts in the flat split: ``x[b, j] == corpus.tokens[start[b] + j]``
           wherever there is input; -1 for a row of padding
``reset``  (B,) bool, `Contiguous` only: this row starts a new piece (or its padding) here
``sounding`` (B, L) with ``sounding=True`` only: what sounds at each input token
           (`PreparedCorpus.sounding`, for a model with ``GPTConfig.sounding``), 0 on padding

The corpus may live on disk (memmap), in RAM, or on a torch device (``location="cuda"``): each
batch is gathered where the tokens are (numpy fancy indexing, one ``torch.from_numpy`` per
batch; or torch indexing on the device, with no per-token host work). What to read is decided
up front with numpy from ``seed`` and the epoch number, and sent to the device once per epoch
(or per 1024 batches), so all three locations give identical batches.

Each ``iter()`` is one epoch and moves on to the next epoch (new shuffle, new windows);
``set_epoch(e)`` chooses the epoch explicitly, as with PyTorch's ``DistributedSampler``.
Batches are already collated: iterate directly, no ``DataLoader`` needed.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .gather import IGNORE_INDEX, Batches, Plan, check_positive

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .corpus import PreparedCorpus

CHUNK_BATCHES = 1024  # RandomWindows plans this many batches at a time (bounded memory)

__all__ = ["IGNORE_INDEX", "RandomWindows", "PerSong", "Contiguous", "make_batches", "rows_crossing", "STRATEGIES"]


class RandomWindows(Batches):
    """Random windows of ``seq_len + 1`` tokens of the split seen as one long sequence.

    Rows start uniformly in ``[0, n_tokens - seq_len - 1]`` and may span several pieces
    (``<eos>`` separates them); ``x = w[:-1]``, ``y = w[1:]``, never any padding.

    An epoch is ``num_batches`` batches (default ``max(1, n_tokens // (batch_size * seq_len))``,
    about one pass worth of tokens); with ``infinite=True`` iteration never stops (epoch after
    epoch) and ``len()`` is undefined. Windows are drawn with ``numpy.random.default_rng([seed,
    epoch])``: same seed and epoch, same batches, wherever the corpus lives.
    """

    def __init__(self, corpus: PreparedCorpus, batch_size: int, seq_len: int, seed: int = 0, *,
                 num_batches: int | None = None, infinite: bool = False,
                 **where: Any):  # device, pin_memory (`Batches`)
        super().__init__(corpus, batch_size, seq_len, seed, **where)
        n = corpus.n_tokens
        if n < self.seq_len + 1:
            raise ValueError(f"RandomWindows needs at least seq_len + 1 = {self.seq_len + 1} tokens; "
                             f"the {corpus.split!r} split has {n}")
        self.num_batches = (max(1, n // (self.batch_size * self.seq_len)) if num_batches is None
                            else check_positive("num_batches", num_batches))
        self.infinite = bool(infinite)

    def __len__(self) -> int:
        if self.infinite:
            raise TypeError("an infinite RandomWindows has no length")
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.infinite:
            return super().__iter__()
        return self._forever()

    def _forever(self):
        while True:
            epoch, self.epoch = self.epoch, self.epoch + 1
            yield from self._iter_epoch(epoch)

    def _plan_chunks(self, epoch: int) -> Iterator[Plan]:
        # Plans in chunks so that a huge num_batches never needs a huge array of offsets.
        rng = self._rng(epoch)
        B, L1 = self.batch_size, self.seq_len + 1
        high = self.corpus.n_tokens - self.seq_len  # exclusive: last start is n - L - 1
        for first in range(0, self.num_batches, CHUNK_BATCHES):
            nb = min(CHUNK_BATCHES, self.num_batches - first)
            start = rng.integers(0, high, size=nb * B, dtype=np.int64)
            yield Plan(
                start=start,
                length=np.full(nb * B, L1, np.int64),
                piece=None,
                reset=None,
                bounds=np.stack([np.arange(nb) * B, np.arange(1, nb + 1) * B], axis=1),
            )

    def padding_fraction(self, epoch: int | None = None) -> float:  # noqa: ARG002  (the same in every epoch)
        """Always 0: every window is all real tokens."""
        return 0.0


class PerSong(Batches):
    """One piece per row: its first ``seq_len + 1`` tokens (or a random crop), else right-padded.

    ``shuffle=True`` (default) visits the pieces in a new seeded order each epoch;
    ``shuffle=False`` keeps corpus order. ``random_crop=True`` crops a piece longer than
    ``seq_len + 1`` at a uniformly random offset instead of at its start (a different tail
    every epoch). The last batch of an epoch has fewer rows unless ``drop_last=True``.
    Pieces of fewer than 2 tokens (no target) are skipped.
    """

    def __init__(self, corpus: PreparedCorpus, batch_size: int, seq_len: int, seed: int = 0, *,
                 shuffle: bool = True, random_crop: bool = False, drop_last: bool = False,
                 **where: Any):  # device, pin_memory (`Batches`)
        super().__init__(corpus, batch_size, seq_len, seed, **where)
        self.shuffle, self.random_crop, self.drop_last = bool(shuffle), bool(random_crop), bool(drop_last)

    def _make_plan(self, epoch: int) -> Plan:
        rng = self._rng(epoch)
        order = self._ordered_pieces(rng)
        B = self.batch_size
        n_batches = len(order) // B if self.drop_last else -(-len(order) // B)
        order = order[: n_batches * B] if self.drop_last else order
        n = np.asarray(self.corpus.lengths)[order].astype(np.int64)
        length = np.minimum(n, self.seq_len + 1)
        offset = rng.integers(0, n - length + 1) if self.random_crop and len(n) else np.zeros_like(n)
        rows = np.arange(n_batches) * B
        return Plan(
            start=np.asarray(self.corpus.starts)[order].astype(np.int64) + offset,
            length=length,
            piece=order.astype(np.int64),
            reset=None,
            bounds=np.stack([rows, np.minimum(rows + B, len(order))], axis=1).reshape(-1, 2),
        )


class Contiguous(Batches):
    """Each row streams whole pieces, segment after segment, across consecutive batches.

    A piece of ``n`` tokens gives ``n - 1`` targets, cut into ``ceil((n - 1) / seq_len)``
    segments: segment ``k`` has ``x = t[kL : kL+L]`` and ``y = t[kL+1 : kL+L+1]``; the last one
    is right-padded (``y = -100`` there). A segment never mixes two pieces, and no piece is split
    across rows. Batch ``t + 1`` row ``b`` continues batch ``t`` row ``b``, so a recurrent or kNN
    memory can be carried over per row; ``reset[b]`` is True where row ``b`` starts a new piece
    (and for every row in the first batch of an epoch): clear that row's memory then.

    Pieces are assigned to rows up front, balancing rows by segment count: longest piece first,
    each to the row with the fewest segments so far (ties: the lower row). Each row then plays
    its pieces in piece order -- corpus order, or with ``shuffle=True`` a seeded order that
    changes each epoch (the shuffled order also breaks ties in the assignment). Any
    ``batch_size`` works, even more rows than pieces.

    An epoch lasts until the longest row is done (``len()`` batches). Rows that finish earlier
    get all-padding segments (``x = <pad>``, ``y = -100``, ``piece = -1``, ``reset`` True on the
    first one) until then, so no token is ever dropped; `padding_fraction()` is the price (that
    padding plus each piece's padded last segment). Pieces of fewer than 2 tokens are skipped.
    """

    def __init__(self, corpus: PreparedCorpus, batch_size: int, seq_len: int, seed: int = 0, *,
                 shuffle: bool = False, **where: Any):  # device, pin_memory (`Batches`)
        super().__init__(corpus, batch_size, seq_len, seed, **where)
        self.shuffle = bool(shuffle)

    def _segments(self) -> np.ndarray:
        n = np.asarray(self.corpus.lengths).astype(np.int64)
        return np.where(n >= 2, -(-(n - 1) // self.seq_len), 0)

    def row_pieces(self, epoch: int | None = None) -> list[list[int]]:
        """The pieces each row plays, in order, in an epoch (default: the next one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        order = self._ordered_pieces(self._rng(epoch))
        nseg = self._segments()
        rank = np.empty(len(self.corpus.lengths), np.int64)
        rank[order] = np.arange(len(order))  # play position of each piece
        # Longest-processing-time-first greedy; the stable sort keeps `order` among equals.
        by_len = order[np.argsort(-nseg[order], kind="stable")]
        heap = [(0, r) for r in range(self.batch_size)]  # (segments so far, row)
        rows: list[list[int]] = [[] for _ in range(self.batch_size)]
        for p in by_len.tolist():
            load, r = heapq.heappop(heap)
            rows[r].append(p)
            heapq.heappush(heap, (load + int(nseg[p]), r))
        return [sorted(row, key=lambda p: rank[p]) for row in rows]

    def _make_plan(self, epoch: int) -> Plan:
        B, L = self.batch_size, self.seq_len
        nseg = self._segments()
        lengths = np.asarray(self.corpus.lengths).astype(np.int64)
        starts = np.asarray(self.corpus.starts).astype(np.int64)
        rows = self.row_pieces(epoch)
        T = max((int(nseg[row].sum()) for row in rows), default=0)
        # (T, B) tables, padding segments by default: length 0 -> x = <pad>, y = -100, piece -1.
        start = np.zeros((T, B), np.int64)
        length = np.zeros((T, B), np.int64)
        piece = np.full((T, B), -1, np.int64)
        reset = np.zeros((T, B), bool)
        for r, row in enumerate(rows):
            p = np.asarray(row, np.int64)
            ns = nseg[p]
            seg_piece = np.repeat(p, ns)  # piece of each of this row's segments
            total = len(seg_piece)
            k = np.arange(total) - np.repeat(np.cumsum(ns) - ns, ns)  # segment number in its piece
            start[:total, r] = starts[seg_piece] + k * L
            length[:total, r] = np.minimum(L + 1, lengths[seg_piece] - k * L)
            piece[:total, r] = seg_piece
            reset[:total, r] = k == 0
            if total < T:
                reset[total, r] = True  # this row's padding starts: its memory is stale
        if T:
            reset[0, :] = True  # a new epoch: no memory carries over
        return Plan(
            start=start.reshape(-1),
            length=length.reshape(-1),
            piece=piece.reshape(-1),
            reset=reset.reshape(-1),
            bounds=np.stack([np.arange(T) * B, np.arange(1, T + 1) * B], axis=1).reshape(-1, 2),
        )


STRATEGIES = {"random_windows": RandomWindows, "per_song": PerSong, "contiguous": Contiguous}


def make_batches(corpus: PreparedCorpus, strategy: str, batch_size: int, seq_len: int, **kw: Any) -> Batches:
    """``"random_windows"`` | ``"per_song"`` | ``"contiguous"`` -> that strategy's batches."""
    try:
        cls = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown batching strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}") from None
    return cls(corpus, batch_size, seq_len, **kw)


def rows_crossing(batch: dict[str, torch.Tensor]) -> int:
    """How many rows of ``batch`` run into a second piece (padding, piece -1, does not count)."""
    p = batch["piece"]
    return int(((p[:, 1:] != p[:, :-1]) & (p[:, 1:] >= 0)).any(dim=1).sum())
