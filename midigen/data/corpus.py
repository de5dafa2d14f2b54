"""`PreparedCorpus`: read one split of a prepared corpus (written by `midigen prepare`).

On disk, a prepared corpus is a folder::

    manifest.json          what was encoded, how, what failed (written by assemble.py)
    tokenizer.json         the `Tokenizer` (encoding config, vocabulary, BPE merges if any)
    {split}.tokens.bin     flat token ids of every piece of the split, back to back
                           (each piece is <sos> ... <eos>); uint16, or uint32 for huge vocabularies
    {split}.steps.bin      the time step of each token, parallel to the tokens: uint16 while every
                           piece is shorter than 65,536 steps, else int32 (manifest "steps_dtype";
                           cast before subtracting steps)
    {split}.index.npy      int64 (n_pieces, 2): start offset and length of each piece
    {split}.bpe.*          the same three in merged ids, when the tokenizer has BPE merges

A corpus whose tokenizer has merges reads its ``{split}.bpe.*`` files; ``base=True`` reads the base
ids instead (and ``.tokenizer`` is then the tokenizer without its merges). Corpora of the layout
before `Tokenizer` (``vocab.json``, plus a ``midigen.bpe`` ``tokenizer.json`` for BPE) still load.

The flat files are read through `np.memmap` (a ragged memmap), so reading one piece or one
window costs O(window), never O(corpus). ``location`` chooses where the arrays live: "disk"
(memmap), "ram" (loaded once), or a torch device such as "cuda" (one tensor on the GPU, for
small corpora: batches are then cut without any host-to-device copy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..encoding import Tokenizer
from .splits import SPLITS

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor  # (a corpus on a torch device holds tensors)


class PreparedCorpus:
    def __init__(self, path: str | os.PathLike, split: str = "train", location: str = "disk", base: bool = False):
        self.path = Path(path)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.path}: not a prepared corpus (no manifest.json); run `midigen prepare`")
        self.manifest = json.loads(manifest_path.read_text())
        tokenizer = Tokenizer.load(self.path)
        self.split = split
        self.location = location
        prefix, dtype = split, np.dtype(self.manifest["token_dtype"])
        sdtype = np.dtype(self.manifest.get("steps_dtype", "int32"))  # (corpora before it: int32)
        if tokenizer.has_merges and base:
            tokenizer = tokenizer.without_merges()
        elif tokenizer.has_merges:  # a BPE corpus (prepare --bpe-vocab): read its merged ids
            prefix, dtype = f"{split}.bpe", np.dtype(self.manifest["bpe"]["token_dtype"])
        self.tokenizer: Tokenizer = tokenizer
        """What the ids read here mean (with merges for a BPE corpus, unless ``base=True``)."""
        index = np.load(self.path / f"{prefix}.index.npy", allow_pickle=False)
        self.starts = index[:, 0].copy() if len(index) else np.zeros(0, np.int64)
        self.lengths = index[:, 1].copy() if len(index) else np.zeros(0, np.int64)
        n = int(self.lengths.sum())
        if len(index) and not np.array_equal(self.starts, np.cumsum(self.lengths) - self.lengths):
            raise ValueError(f"{self.path / f'{prefix}.index.npy'}: pieces are not back to back (corrupt index)")
        if n:
            tokens = np.memmap(self.path / f"{prefix}.tokens.bin", dtype=dtype, mode="r", shape=(n,))
            steps = np.memmap(self.path / f"{prefix}.steps.bin", dtype=sdtype, mode="r", shape=(n,))
        else:
            tokens, steps = np.zeros(0, dtype), np.zeros(0, sdtype)
        if location == "disk":
            self.tokens, self.steps = tokens, steps
        elif location == "ram":
            self.tokens, self.steps = np.array(tokens), np.array(steps)
        else:  # a torch device
            import torch

            # int32 on the device: 8 bytes per token instead of 16; batches are int64 anyway
            self.tokens = torch.from_numpy(np.array(tokens, np.int32)).to(location)
            self.steps = torch.from_numpy(np.array(steps, np.int32)).to(location)

    @property
    def names(self) -> list[str]:
        """The source file of each piece, in order."""
        if not hasattr(self, "_names"):
            self._names = json.loads((self.path / f"{self.split}.pieces.json").read_text())
        return self._names

    def __len__(self) -> int:
        """Number of pieces."""
        return len(self.starts)

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def piece(self, i: int) -> tuple[Array, Array]:
        """Token ids and time steps of piece ``i`` (views on disk/RAM/GPU, no copy)."""
        s, n = int(self.starts[i]), int(self.lengths[i])
        return self.tokens[s : s + n], self.steps[s : s + n]

    def window(self, start: int, length: int) -> tuple[Array, Array]:
        """``length`` tokens (and steps) of the whole split seen as one long sequence."""
        return self.tokens[start : start + length], self.steps[start : start + length]

    def sounding(self) -> Array:
        """What is sounding at each token of the split (`midigen.encoding.sounding`, packed int64),
        computed on first use and kept (8 bytes per token, in RAM or on the corpus's device)."""
        if not hasattr(self, "_sounding"):
            from ..encoding.sounding import sounding

            on_torch = not isinstance(self.tokens, np.ndarray)
            tokens = self.tokens.cpu().numpy() if on_torch else np.asarray(self.tokens)
            steps = self.steps.cpu().numpy() if on_torch else np.asarray(self.steps)
            state = sounding(tokens, steps, self.tokenizer)
            if on_torch:
                import torch

                state = torch.from_numpy(state).to(self.tokens.device)
            self._sounding = state
        return self._sounding

    def __repr__(self) -> str:
        return (f"PreparedCorpus({str(self.path)!r}, split={self.split!r}, pieces={len(self)}, tokens={self.n_tokens}, "
                f"location={self.location!r})")
