"""Training: the `Trainer` and ``midigen train``.

One loop, written to be read (after nanoGPT's train.py), with what a research run needs:
AdamW with decoupled weight decay, linear warm-up then cosine decay, gradient clipping and
accumulation, bf16 autocast on CUDA, optional ``torch.compile``, periodic validation (loss,
perplexity, bits per token), early stopping, a tqdm bar, TensorBoard event files, and
checkpoints (`midigen.checkpoint`: safetensors + JSON) of the latest and the best model, and
callbacks (`midigen.callbacks`) at each evaluation: the CLI attaches a music monitor there
(`midigen.monitor`: a sample from a held-out prompt as audio and piano roll in TensorBoard).

**Exact resume.** The data order is a pure function of (seed, epoch, batch number), and a
checkpoint stores the model, the optimizer moments, the step, the data position and the RNG
states, so ``--resume`` continues as if never stopped: the same losses, to float tolerance.

**Runs never lose work** (`midigen.runs`). The run folder alone resumes a run (``midigen train
--resume RUN``, `Trainer.from_run`): data, model and settings come from it, and settings given again
must agree. A folder that holds a run is refused unless ``resume`` or ``overwrite`` is given.
SIGINT (Ctrl-C) and SIGTERM save ``latest/`` at the next step boundary and raise
`TrainingInterrupted`, whose message is the command that resumes.

**Scaling out.** Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (NCCL on GPUs, gloo on CPUs). Every process draws the same global batch
and trains on its share of the rows, so N processes follow the trajectory of one process with
the same global batch::

    torchrun --nproc_per_node 4 -m midigen train --data data/prepared/bach --out runs/gpt4
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from . import runs
from .callbacks import Callback, ProgressCallback
from .checkpoint import init_weights_from, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import PreparedCorpus, make_batches
from .data.augment import Augmenter
from .errors import RunFolderError, TrainingError
from .model import MODELS, GPTConfig, build_model
from .train_config import TrainConfig, default_model_config, lr_at

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .model import Memory


class Trainer:
    """Train ``config``'s model on its data, into its run folder ``config.out``.

    ``model_config``: a model config, or a dict of fields to override in the one sized for the
    corpus (`default_model_config`). ``resume=True`` continues the run in ``config.out`` from its
    ``latest`` checkpoint, with the model config it was made with (given fields must agree, as
    must the settings outside `runs.MAY_CHANGE`); `from_run` needs only the folder.
    ``overwrite=True`` clears a run that is there (else one is refused). ``callbacks``:
    `Callback` objects called at each step and evaluation (Hugging Face's ``TrainerCallback``).
    """

    def __init__(self, config: TrainConfig, model_config: GPTConfig | dict | None = None, resume: bool = False,
                 overwrite: bool = False, callbacks: list[Callback] | None = None):
        self.cfg = cfg = config
        self.out = Path(cfg.out)
        if resume and overwrite:
            raise RunFolderError("resume or overwrite a run, not both")
        saved, self.resume_changes = None, {}  # (field: (the run's value, the new one)) allowed on resume
        if resume:  # before anything is built: a run made otherwise is refused first
            saved = runs.read_run(self.out)
            given = model_config.to_dict() if isinstance(model_config, GPTConfig) else model_config
            self.resume_changes = runs.check_resume(self.out, saved, cfg.to_dict(), given)
        elif not overwrite:
            runs.refuse_existing(self.out)
        self._clear = overwrite
        self._init_processes()
        # ---- data
        self.train_data = PreparedCorpus(cfg.data, "train", cfg.location)
        self.valid_data = PreparedCorpus(cfg.data, "valid", cfg.location)
        self.tokenizer = self.train_data.tokenizer  # (with merges for a BPE corpus)
        if self.valid_data.n_tokens == 0:
            raise ValueError(f"{cfg.data}: the validation split is empty; prepare with a larger --valid-fraction")
        if cfg.model not in MODELS:
            raise ValueError(f"unknown model {cfg.model!r} (known: {', '.join(MODELS)})")
        self.uses_memory = cfg.model != "gpt"
        self.strategy = cfg.strategy or ("contiguous" if self.uses_memory else "random_windows")
        if self.uses_memory and self.strategy != "contiguous":
            raise ValueError(f"model {cfg.model!r} carries memory from batch to batch: it needs --strategy contiguous")
        self._init_model(model_config, saved)
        order = {} if cfg.shuffle is None or self.strategy == "random_windows" else {"shuffle": cfg.shuffle}
        self.batches = make_batches(self.train_data, self.strategy, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                                    sounding=self.model_config.sounding, **order)
        self.augmenter = (Augmenter(self.train_data, cfg.transpose, cfg.tempo_shift, seed=cfg.seed)
                          if cfg.transpose or cfg.tempo_shift else None)  # training batches only
        # ---- state
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val = float("inf")
        self.bad_evals = 0
        self.history: list[dict] = []
        self.resumed = resume
        if resume:
            runs.restore(self)
        self.callbacks = list(callbacks or [])
        if cfg.progress and self.is_main:
            self.callbacks.insert(0, ProgressCallback())
        self.writer = None

    def _init_processes(self) -> None:
        """This process's rank and device; under ``torchrun``, the process group."""
        cfg = self.cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if cfg.device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            device = cfg.device
        if self.world > 1:
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
            if device == "cuda":
                device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
                torch.cuda.set_device(device)
            if cfg.batch_size % self.world:
                raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {self.world} processes")
        self.device = torch.device(device)
        self.is_main = self.rank == 0

    def _init_model(self, model_config: GPTConfig | dict | None, saved: dict | None) -> None:
        """The model (the run's own config on resume, else ``model_config`` or one sized for the corpus),
        its optimizer, its memories, and its compiled or DDP wrapper ``self.model``."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if saved is not None:  # the run's own model config
            self.raw_model = build_model(cfg.model, saved["model_config"])
            model_config = self.raw_model.config
        elif cfg.init_from and (isinstance(model_config, dict) or model_config is None):
            # fine-tuning: the checkpoint's model, with the fields given (say a new feature) changed
            start = read_checkpoint(cfg.init_from)[1]["model_config"]
            model_config = GPTConfig.from_dict({**start, **(model_config or {})})
            if cfg.seq_len > model_config.block_size:
                raise ValueError(f"--seq-len {cfg.seq_len} is longer than the block size of {cfg.init_from} "
                                 f"({model_config.block_size})")
        elif isinstance(model_config, dict) or model_config is None:
            model_config = default_model_config(self.tokenizer, cfg.seq_len, cfg.model, **(model_config or {}))
        self.model_config = model_config
        if self.model_config.vocab_size != len(self.tokenizer):
            raise ValueError(f"model vocab_size {self.model_config.vocab_size} != corpus vocabulary "
                             f"{len(self.tokenizer)}")
        self.fresh_parameters: list[str] = []  # (with init_from: the parameters its checkpoint lacks)
        if saved is None:
            self.raw_model = build_model(cfg.model, self.model_config.to_dict())
            if cfg.init_from:
                self.fresh_parameters = init_weights_from(self.raw_model, cfg.init_from, self.tokenizer)
        self.raw_model = self.raw_model.to(self.device)
        # the memories of this process's rows, carried from batch to batch
        self.memory = self.raw_model.new_memory(cfg.batch_size // self.world)
        self.optimizer = self.raw_model.optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), self.device.type)
        self.model = self.raw_model
        if cfg.compile:
            self.model = torch.compile(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )

    @classmethod
    def from_run(cls, run: str | os.PathLike, model_config: dict | None = None, callbacks: list[Callback] | None = None,
                 **changes) -> Trainer:
        """Resume the run in folder ``run`` with the data, model and settings it was made with.

        Keyword arguments set `TrainConfig` fields; those outside `runs.MAY_CHANGE` (and the
        fields of ``model_config``) must agree with the run's, e.g.
        ``Trainer.from_run("runs/bach", max_steps=2000).train()`` trains it further.
        """
        saved = runs.read_run(run)["train_config"]
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig.from_dict({k: v for k, v in {**saved, **changes, "out": str(run)}.items() if k in known})
        return cls(config, model_config, resume=True, callbacks=callbacks)

    # ------------------------------------------------------------------ data
    def _batches_from(self, epoch: int, skip: int):
        """Batches from (epoch, skip) on, for ever; keeps self.epoch/batch_in_epoch current."""
        while True:
            self.batches.set_epoch(epoch)
            self.epoch, self.batch_in_epoch = epoch, 0
            for i, batch in enumerate(self.batches):
                if i < skip:
                    continue
                self.batch_in_epoch = i + 1
                yield batch
            epoch, skip = epoch + 1, 0

    def _my_rows(self, batch: dict) -> dict:
        """This process's share of the global batch, on its device."""
        per = self.cfg.batch_size // self.world
        rows = slice(self.rank * per, (self.rank + 1) * per)
        return {k: v[rows].to(self.device, non_blocking=True) for k, v in batch.items()}

    def _memory_kw(self, b: dict, memory: Memory | None) -> dict:
        """The forward pass's keywords beyond ids, steps and targets: memories, the sounding state."""
        kw = {"sounding": b["sounding"]} if "sounding" in b else {}
        if memory is None:
            return kw
        return {**kw, "memory": memory, "reset": b["reset"], "valid": b["piece"] >= 0}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        """Validation loss, token-weighted, every token once, piece by piece (`metrics.likelihood`),
        also by token kind (``loss_by_kind/note``, ``.../duration``, ...: `Tokenizer.token_kinds`)."""
        from .metrics import likelihood

        with self.autocast:
            m = likelihood(self.raw_model, self.valid_data, self.cfg.batch_size, self.cfg.seq_len,
                           max_batches=self.cfg.eval_batches, device=self.device)
        self.model.train()
        return {k: m[k] for k in ("loss", "perplexity", "bits_per_token", "bits_per_note", "tokens")} | {
            "later_segments_loss": m["later_segments"]["loss"]} | {
            f"loss_by_kind/{kind}": v["loss"] for kind, v in m["by_kind"].items()}

    def _call(self, moment: str, *args) -> None:
        if not self.is_main:
            return
        rng = rng_state() if moment == "on_evaluate" else None  # callbacks must not steer the run
        for cb in self.callbacks:
            getattr(cb, moment)(self, *args)
        if rng is not None:
            set_rng_state(rng)
            self.model.train()

    def _say(self, message: str) -> None:
        bar = next((cb for cb in self.callbacks if isinstance(cb, ProgressCallback)), None)
        bar.write(message) if bar is not None else print(message, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict:
        return {
            "model": self.cfg.model,
            "model_config": self.model_config.to_dict(),
            "encoding": self.tokenizer.config.to_dict(),
            "tokenizer": "bpe" if self.tokenizer.has_merges else "base",
            "train_config": self.cfg.to_dict(),
        }

    def _state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val": self.best_val,
            "bad_evals": self.bad_evals,
            "rng": rng_state(),
        }

    def save(self, name: str = "latest") -> Path | None:
        if not self.is_main:
            return None
        state = self._state() if name == "latest" else None
        opt = self.optimizer if name == "latest" else None
        # a run in progress also needs its memories to resume exactly
        extra = self.memory.tensors() if (self.memory is not None and name == "latest") else None
        return save_checkpoint(self.out / name, self.raw_model, self.tokenizer, self._meta(), opt, state, extra)

    # ------------------------------------------------------------------ the loop
    def _log(self, record: dict):
        self.history.append(record)
        if not self.is_main:
            return
        with open(self.out / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, record["step"])

    def train(self, until: int | None = None) -> dict:
        """Train to ``max_steps`` (or early stop); returns the last validation metrics.

        ``until`` stops earlier, at that step, keeping the schedule of ``max_steps`` (as an
        interrupted run would; a checkpoint is written there). On SIGINT or SIGTERM it saves
        ``latest/`` at the end of the step and raises `TrainingInterrupted`.
        """
        cfg = self.cfg
        if self.is_main:
            runs.begin(self)
        data = self._batches_from(self.epoch, self.batch_in_epoch)
        self.model.train()
        metrics: dict = {}
        tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum
        self._call("on_train_begin")
        t_last = time.perf_counter()
        try:
            with runs.StopSignals(say=self._say) as signals:
                stop = min(cfg.max_steps, until) if until is not None else cfg.max_steps
                while self.step < stop:
                    record, stop_now = self._step(data, tokens_per_step, t_last, signals)
                    t_last = time.perf_counter()
                    self._log(record)
                    self._call("on_step_end", record)
                    evaluated = self.step % cfg.eval_interval == 0 or self.step == stop
                    if evaluated:
                        metrics = self._evaluate_and_save()
                        if cfg.patience is not None and self.bad_evals >= cfg.patience:
                            self._say(f"early stopping at step {self.step}: no improvement in {cfg.patience} "
                                      "validations")
                            break
                        t_last = time.perf_counter()  # don't count evaluation as training time
                    if (stop_now or signals.caught) and self.step < stop:
                        if not evaluated:  # (an evaluation has just saved it)
                            self.save("latest")
                        raise runs.interruption(self, signals.caught or "SIGTERM")
        finally:
            self._call("on_train_end")
            if self.writer is not None:
                self.writer.close()
        return metrics

    def _step(self, data: Iterator[dict], tokens_per_step: int, t_last: float,
              signals: runs.StopSignals) -> tuple[dict, bool]:
        """One optimizer step; returns its record and whether any process was asked to stop."""
        cfg = self.cfg
        lr = lr_at(self.step, cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            batch = next(data)
            b = self._my_rows(self.augmenter(batch, self.epoch) if self.augmenter is not None else batch)
            sync = micro == cfg.grad_accum - 1 or self.world == 1
            ctx = self.model.no_sync() if not sync else contextlib.nullcontext()
            with ctx, self.autocast:
                _, loss = self.model(b["x"], b["steps"], b["y"], **self._memory_kw(b, self.memory))
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach() / cfg.grad_accum
        stop_any = False
        if self.world > 1:  # the loss, and whether a process caught a signal: all stop at the same step
            both = torch.stack([loss_sum, torch.tensor(float(signals.caught is not None), device=self.device)])
            dist.all_reduce(both)
            loss_sum, stop_any = both[0] / self.world, bool(both[1] > 0)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.grad_clip)
        train_loss = float(loss_sum)
        if not math.isfinite(train_loss) or not math.isfinite(float(grad_norm)):
            raise TrainingError(
                f"loss became {train_loss} at step {self.step} (grad norm {float(grad_norm)}): stopping; "
                f"the last good checkpoint is in {self.out / 'latest'}. Try a lower --lr or more warm-up "
                f"({runs.resume_command(self.out, self.world)} --lr ...)."
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        tps = tokens_per_step / max(time.perf_counter() - t_last, 1e-9)
        augmented = {f"augment/{k}": v for k, v in self.augmenter.take_counts().items()} if self.augmenter else {}
        return {"step": self.step, "train/loss": train_loss, "train/lr": lr,
                "train/grad_norm": float(grad_norm), "train/tokens_per_s": tps, **augmented}, stop_any

    def _evaluate_and_save(self) -> dict:
        metrics = self.evaluate()
        self._log({"step": self.step, **{f"valid/{k}": v for k, v in metrics.items()}})
        self._call("on_evaluate", metrics)
        improved = metrics["loss"] < self.best_val
        if improved:
            self.best_val, self.bad_evals = metrics["loss"], 0
        else:
            self.bad_evals += 1
        self.save("latest")
        if improved:
            self.save("best")
        return metrics
