"""`TrainConfig`: every setting of a training run, and the two rules derived from it: the
learning-rate schedule (`lr_at`) and the model sized for a corpus (`default_model_config`).

`midigen.train.Trainer` runs what this describes; the CLI makes ``midigen train``'s flags from
its fields, and a run folder's ``train_config.json`` is one of these (what ``--resume`` restores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .config import JSONConfig, opt
from .model import MODELS, GPTConfig

if TYPE_CHECKING:
    from .encoding import Tokenizer


@dataclass
class TrainConfig(JSONConfig):
    data: str = opt("data/prepared/bach", "prepared corpus folder (from `midigen prepare`)")
    out: str = opt("runs/gpt", "run folder: checkpoints, TensorBoard logs, history")
    model: str = opt("gpt", "gpt, or with memory: xl (Transformer-XL), knn (Memorizing Transformers), xl+knn; "
                     "a memory model defaults to rotary positions and the contiguous strategy", choices=MODELS)
    strategy: Literal["random_windows", "per_song", "contiguous"] | None = opt(
        None, "batching (None: contiguous for memory models, whose rows stream pieces, else random_windows)")
    shuffle: bool | None = opt(None, "per_song and contiguous: visit the pieces in a seeded order, new each epoch "
                                     "(None: per_song does, contiguous plays them in corpus order; random_windows "
                                     "always draws at random)")
    location: str = opt("disk", "where the corpus lives: disk (memmap), ram, or a torch device such as cuda")
    batch_size: int = opt(8, "rows per micro-step, across all processes")
    grad_accum: int = opt(1, "micro-steps per optimizer step")
    seq_len: int = opt(256, "tokens per row (and the model's block size)")
    max_steps: int = opt(1000, "optimizer steps")
    lr: float = opt(3e-4, "peak learning rate (after the warm-up)")
    min_lr: float = opt(3e-5, "learning rate at max_steps (cosine decay)")
    warmup_steps: int = opt(100, "steps of linear warm-up")
    weight_decay: float = opt(0.1, "AdamW weight decay (of the matrices)")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.95, "AdamW beta2")
    grad_clip: float = opt(1.0, "clip the gradient norm to this")
    eval_interval: int = opt(100, "steps between validations (and checkpoints)")
    eval_batches: int | None = opt(20, "validation batches per evaluation (None or 0: the whole split)")
    patience: int | None = opt(None, "stop after this many validations without improvement (None: never)")
    log_interval: int = opt(10, "steps between updates of the progress bar's numbers")
    seed: int = opt(0, "seed of the model's initialisation and the data order")
    init_from: str | None = opt(None, "fine-tune: start from this checkpoint's weights (a run folder, a checkpoint "
                                      "or a bundled model's name; same vocabulary); parameters it lacks, such as a "
                                      "feature's new embeddings, keep their initialisation")
    transpose: int = opt(0, "augment: transpose each training piece by a random number of semitones in "
                            "[-N, N] (limited so no note leaves the pitch range; drums stay; 0: off)")
    tempo_shift: int = opt(0, "augment: move each training piece's tempo tokens by a random number of bins "
                              "in [-N, N] (clipped to the bin range; 0: off)")
    device: str = opt("auto", "auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
    compile: bool = opt(False, "torch.compile the model")
    progress: bool = opt(True, "show a progress bar")

    def __post_init__(self):
        super().__post_init__()
        if self.eval_batches == 0:
            self.eval_batches = None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def default_model_config(tokenizer: Tokenizer, seq_len: int, model: str = "gpt", **overrides) -> GPTConfig:
    """A model config sized for the corpus: its tokenizer's ids, 4/4 bars at the encoding's resolution."""
    kw = dict(vocab_size=len(tokenizer), block_size=seq_len, steps_per_bar=4 * tokenizer.config.steps_per_beat)
    kw.update(overrides)
    return GPTConfig.for_model(model, **kw)
