"""The machinery the batching strategies share (`midigen.data.batching`): epochs, plans, and
gathering a batch wherever the corpus lives (memmap, RAM, or a torch device).

A strategy only decides *what* to read: a `Plan`, one entry per row (a start in the flat split,
a length of at most ``seq_len + 1`` tokens, the piece, a reset flag) and the row range of each
batch. `Batches` turns plans into batches of torch tensors (int64 ``x``, ``y``, ``steps``, ``piece``,
``start``: each row's ``Plan.start``, -1 for a row of padding; and bool ``reset`` where the plan
has it): with numpy fancy indexing on the host, or with torch indexing on the device, many
batches at a time (`GROUP_POSITIONS`), so every location gives identical batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .corpus import PreparedCorpus

IGNORE_INDEX = -100  # nn.CrossEntropyLoss's default ignore_index
GROUP_POSITIONS = 1 << 20  # on a torch device, batches are gathered this many positions at a time

__all__ = ["GROUP_POSITIONS", "IGNORE_INDEX", "Batches", "Plan", "check_positive"]


@dataclass
class Plan:
    """What to read for a run of batches: one entry per row, rows of batch i in bounds[i].

    A row is the ``length`` (<= seq_len + 1) tokens of the flat split from ``start``; the rest
    of the row is padding. ``piece`` is None when rows may cross pieces (looked up per token).
    """

    start: np.ndarray  # (R,) int64
    length: np.ndarray  # (R,) int64
    piece: np.ndarray | None  # (R,) int64
    reset: np.ndarray | None  # (R,) bool
    bounds: np.ndarray  # (n_batches, 2) int64: row range of each batch

    @property
    def n_targets(self) -> int:
        return int(np.maximum(self.length - 1, 0).sum())


def check_positive(name: str, value: object) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Batches:
    """Shared machinery: epochs, plans, and gathering a batch wherever the corpus lives.

    Every strategy takes these arguments: the corpus, ``batch_size`` rows of ``seq_len`` tokens,
    a ``seed``, the ``device`` batches are sent to (default: where the corpus is) and
    ``pin_memory`` (page-locked host batches, for faster copies to a CUDA device) and ``sounding``
    (batches also carry what sounds at each token, for a model that embeds it).
    """

    shuffle = False  # (the strategies that shuffle pieces set it)

    def __init__(
        self,
        corpus: PreparedCorpus,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        *,
        device: str | torch.device | None = None,
        pin_memory: bool = False,
        sounding: bool = False,
    ):
        self.corpus = corpus
        self.batch_size = check_positive("batch_size", batch_size)
        self.seq_len = check_positive("seq_len", seq_len)
        self.seed = int(seed)
        self.epoch = 0
        self.pad_id = int(corpus.tokenizer.pad_id)
        self._on_torch = torch.is_tensor(corpus.tokens)
        source = corpus.tokens.device if self._on_torch else torch.device("cpu")
        self.device = torch.device(device) if device is not None else source
        self._source_device = source
        if pin_memory and not torch.cuda.is_available():
            warnings.warn("pin_memory=True but no CUDA device is available; not pinning", stacklevel=3)
            pin_memory = False
        # Pinning only helps host->device copies of batches gathered on the host.
        self.pin_memory = bool(pin_memory) and not self._on_torch
        if self._on_torch:
            self._starts_t = torch.as_tensor(corpus.starts, dtype=torch.int64, device=source)
            self._arange_t = torch.arange(self.seq_len + 1, device=source)
        self._arange = np.arange(self.seq_len + 1)
        self._cache: tuple[int, Plan] | None = None
        # what sounds at each token (`PreparedCorpus.sounding`), for models that embed it
        self._sounding = corpus.sounding() if sounding else None

    # ------------------------------------------------------------ epochs and plans
    def set_epoch(self, epoch: int) -> None:
        """The epoch the next ``iter()`` yields (it decides shuffles, crops and windows)."""
        self.epoch = int(epoch)

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def _make_plan(self, epoch: int) -> Plan:  # the whole epoch (PerSong, Contiguous)
        raise NotImplementedError

    def _plan(self, epoch: int) -> Plan:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._make_plan(epoch))
        return self._cache[1]

    def _plan_chunks(self, epoch: int) -> Iterator[Plan]:
        yield self._plan(epoch)

    def __len__(self) -> int:
        """Batches in the next epoch."""
        return len(self._plan(self.epoch).bounds)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._iter_epoch(epoch)

    def _iter_epoch(self, epoch: int):
        for plan in self._plan_chunks(epoch):
            if self._on_torch:
                yield from self._iter_plan_torch(plan)
                continue
            start, length, piece, reset = plan.start, plan.length, plan.piece, plan.reset
            for lo, hi in plan.bounds.tolist():
                batch = self._gather_numpy(start[lo:hi], length[lo:hi], None if piece is None else piece[lo:hi])
                if reset is not None:
                    batch["reset"] = torch.from_numpy(reset[lo:hi].copy())
                yield self._to_device(batch)

    def _iter_plan_torch(self, plan: Plan):
        """Batches from a corpus on a torch device, gathered many at a time.

        One host->device copy per plan, none per batch. A batch is a dozen tiny kernels, and on a
        GPU their launches, not the work, set the pace: measured on an H200, batches of 8 x 256
        cut one by one came 4-7x slower than from RAM. So ~`GROUP_POSITIONS` positions' worth
        of batches are gathered at once, and each batch is a view of its rows.
        """
        dev = self._source_device
        start = torch.as_tensor(plan.start, device=dev)
        length = torch.as_tensor(plan.length, device=dev)
        piece = None if plan.piece is None else torch.as_tensor(plan.piece, device=dev)
        reset = None if plan.reset is None else torch.as_tensor(plan.reset, device=dev)
        per_group = max(1, GROUP_POSITIONS // (self.batch_size * (self.seq_len + 1)))
        for g in range(0, len(plan.bounds), per_group):
            bounds = plan.bounds[g : g + per_group]  # (the rows of consecutive batches follow each other)
            lo, hi = int(bounds[0, 0]), int(bounds[-1, 1])
            group = self._gather_torch(start[lo:hi], length[lo:hi], None if piece is None else piece[lo:hi])
            if reset is not None:
                group["reset"] = reset[lo:hi]
            for a, b in (bounds - lo).tolist():
                yield self._to_device({k: v[a:b] for k, v in group.items()})

    def padding_fraction(self, epoch: int | None = None) -> float:
        """Padded target positions / all target positions over an epoch (default: the next one)."""
        plan = self._plan(self.epoch if epoch is None else int(epoch))
        positions = len(plan.start) * self.seq_len
        return 0.0 if positions == 0 else 1.0 - plan.n_targets / positions

    # ------------------------------------------------------------ gathering
    def _gather_numpy(self, start: np.ndarray, length: np.ndarray, piece: np.ndarray | None) -> dict:
        valid = self._arange < length[:, None]  # (b, L+1): is there a token here?
        # Padding positions read token 0 of the split (always there), then get overwritten.
        idx = np.where(valid, start[:, None] + self._arange, 0)
        w = np.asarray(self.corpus.tokens[idx]).astype(np.int64)
        w[~valid] = self.pad_id
        # Copies, not views: x and y must not share memory (y gets -100 written into it).
        x, y, xv = w[:, :-1].copy(), w[:, 1:].copy(), valid[:, :-1]
        y[~valid[:, 1:]] = IGNORE_INDEX
        steps = np.asarray(self.corpus.steps[idx[:, :-1]]).astype(np.int64)
        steps[~xv] = 0
        if piece is None:  # rows may cross pieces: find each token's piece
            pc = np.searchsorted(self.corpus.starts, idx[:, :-1], side="right").astype(np.int64) - 1
        else:
            pc = np.repeat(piece[:, None], self.seq_len, axis=1)
        pc[~xv] = -1
        first = np.where(length > 0, start, -1).astype(np.int64)  # (a row of padding: -1)
        out = [("x", x), ("y", y), ("steps", steps), ("piece", pc), ("start", first)]
        if self._sounding is not None:
            out.append(("sounding", np.where(xv, self._sounding[idx[:, :-1]], 0)))
        return {k: torch.from_numpy(v) for k, v in out}

    def _gather_torch(self, start: torch.Tensor, length: torch.Tensor, piece: torch.Tensor | None) -> dict:
        ar = self._arange_t
        valid = ar < length[:, None]
        idx = torch.where(valid, start[:, None] + ar, 0)
        w = torch.where(valid, self.corpus.tokens[idx].long(), self.pad_id)
        xv = valid[:, :-1]
        x = w[:, :-1].contiguous()
        y = w[:, 1:].masked_fill(~valid[:, 1:], IGNORE_INDEX).contiguous()
        steps = torch.where(xv, self.corpus.steps[idx[:, :-1]].long(), 0)
        if piece is None:
            pc = torch.searchsorted(self._starts_t, idx[:, :-1].contiguous(), right=True) - 1
        else:
            pc = piece[:, None].expand(-1, self.seq_len)
        pc = torch.where(xv, pc, -1)
        first = torch.where(length > 0, start, -1)
        out = {"x": x, "y": y, "steps": steps, "piece": pc, "start": first}
        if self._sounding is not None:
            out["sounding"] = torch.where(xv, self._sounding[idx[:, :-1]], 0)
        return out

    def _to_device(self, batch: dict) -> dict:
        if self.pin_memory:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        if self.device != self._source_device:
            batch = {k: v.to(self.device, non_blocking=self.pin_memory) for k, v in batch.items()}
        return batch

    def _usable_pieces(self) -> np.ndarray:
        # A piece of fewer than 2 tokens has no (input, target) pair: nothing to learn from it.
        return np.flatnonzero(np.asarray(self.corpus.lengths) >= 2)

    def _ordered_pieces(self, rng: np.random.Generator) -> np.ndarray:
        """The usable pieces in corpus order, or with ``shuffle`` in ``rng``'s order (the epoch's)."""
        order = self._usable_pieces()
        return rng.permutation(order) if self.shuffle else order

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_size={self.batch_size}, seq_len={self.seq_len}, "
            f"seed={self.seed}, epoch={self.epoch}, device={str(self.device)!r}, corpus={self.corpus!r})"
        )
