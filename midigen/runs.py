"""Run folders: refusing to clobber one, clearing one, resuming one, and stopping on a signal.

A run folder (``TrainConfig.out``) holds what `midigen.train.Trainer` writes::

    train_config.json   model name and config, encoding, tokenizer kind, training config
    history.jsonl       one JSON record per step and per validation
    tensorboard/        TensorBoard event files
    latest/ best/       checkpoints (`midigen.checkpoint`): latest with the optimizer and data position

**Resuming.** The run folder alone is enough (``midigen train --resume RUN``, `Trainer.from_run`):
the data, model and training settings come from ``train_config.json``. Settings given again
must agree with it, except those in `MAY_CHANGE`: the schedule and its length, evaluation and
logging, and where and how the run executes. Changing ``max_steps`` (train longer), ``lr`` or
``warmup_steps`` (say after the loss blew up) is legitimate, but the run then no longer follows
an uninterrupted one. Everything else defines the run (the data and its order, the model, the
batches, the optimizer's betas and weight decay, which a checkpoint restores): a different value
is a different run, so it is refused with a one-line error that lists every difference.

**Never clobbered.** A folder that holds a run is refused unless ``resume`` (continue it) or
``overwrite`` (clear the run's own entries above, nothing else) is asked for.

**Stopping.** SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption) only set a flag
(`StopSignals`); the trainer saves ``latest/`` at the next step boundary and raises
`TrainingInterrupted` with the exact command that resumes. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import atomic
from .errors import RunFolderError, TrainingInterrupted

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

# A ``trainer`` here is a `midigen.train.Trainer`, typed Any: train is a higher layer, which this
# module may not import, not even for annotations (the import contracts count those too).

RUN_ENTRIES = ("train_config.json", "history.jsonl", "tensorboard", "latest", "best")
#: `TrainConfig` fields that may differ from the run's on resume (every other field must agree).
MAY_CHANGE = frozenset({
    "out", "max_steps", "lr", "min_lr", "warmup_steps", "grad_clip",  # the schedule and its length
    "eval_interval", "eval_batches", "patience", "log_interval",  # evaluation and logging
    "device", "location", "compile", "progress",  # where and how it runs
})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def entries(out: str | os.PathLike) -> list[Path]:
    """The run's own entries in folder ``out`` (including a checkpoint half-renamed by a crash)."""
    p = Path(out)
    if not p.is_dir():
        return []
    return ([p / n for n in RUN_ENTRIES if (p / n).exists()]
            + sorted(p.glob(".latest.*")) + sorted(p.glob(".best.*")))


def refuse_existing(out: str | os.PathLike) -> None:
    """Raise `RunFolderError` if ``out`` holds a run already."""
    if entries(out):
        raise RunFolderError(f"{out} holds a run already: continue it with --resume (midigen train --resume {out}), "
                             "clear it with --overwrite, or choose another --out")


def clear(out: str | os.PathLike) -> None:
    """Remove the run's own entries from ``out`` (other files there are left alone)."""
    for p in entries(out):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def read_run(out: str | os.PathLike) -> dict:
    """What the run in ``out`` was made with: ``{"model", "model_config", "train_config", ...}``."""
    p = Path(out)
    for path in (p / "train_config.json", p / "latest" / "config.json", p / "best" / "config.json"):
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise RunFolderError(f"{path}: not valid JSON ({exc})") from None
            if isinstance(meta, dict) and {"model", "model_config", "train_config"} <= set(meta):
                return meta
            raise RunFolderError(f"{path}: not a midigen run config (no model, model_config or train_config)")
    where = "no such folder" if not p.exists() else "no train_config.json there"
    raise RunFolderError(f"{p}: nothing to resume ({where}); start the run without --resume")


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "data" and a is not None and b is not None:
        return a == b or Path(a).resolve() == Path(b).resolve()
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))  # (tuples and lists alike)


def check_resume(out: str | os.PathLike, saved: dict, train: dict, model: dict | None) -> dict:
    """Check settings given on resume against the run's; returns the changes allowed on resume.

    ``train``: `TrainConfig` fields as given (all of them, or only those typed); ``model``: model
    config fields given (or None). Raises `RunFolderError` listing every field that differs
    and may not (`MAY_CHANGE`). The data may move: a differing ``data`` is accepted when the
    run's own data folder no longer exists (the tokenizer is then checked against the checkpoint).
    """
    saved_train, saved_model = saved["train_config"], saved["model_config"]
    diffs, changes = [], {}
    for k, v in train.items():
        if k not in saved_train or _same(k, saved_train[k], v):
            continue
        moved = k == "data" and not (Path(saved_train[k]) / "manifest.json").is_file()
        if k in MAY_CHANGE or moved:
            changes[k] = (saved_train[k], v)
        else:
            diffs.append(f"{_flag(k)} {saved_train[k]} (given {v})")
    for k, v in (model or {}).items():
        if not _same(k, saved_model.get(k), v):
            shown = (",".join(map(str, saved_model[k])) if isinstance(saved_model.get(k), list)
                     else saved_model.get(k, "unset"))
            diffs.append(f"{_flag(k)} {shown} (given {v})")
    if diffs:
        raise RunFolderError(f"{out} was trained with other settings than given: {', '.join(diffs)}; leave them out "
                             f"(midigen train --resume {out} reads them from the run), or start another run "
                             "(another --out, or --overwrite)")
    return changes


def resume_command(out: str | os.PathLike, world: int = 1) -> str:
    """The command line that resumes the run in ``out``."""
    run = f"-m midigen train --resume {shlex.quote(str(out))}"
    return (f"torchrun --nproc_per_node {world} {run}" if world > 1
            else f"midigen train --resume {shlex.quote(str(out))}")


# ---------------------------------------------------------------- a trainer's run folder


def restore(trainer: Any) -> None:
    """Load the run's ``latest`` checkpoint into ``trainer`` (model, optimizer, memories, step,
    data position, RNG, history). A run stopped before its first checkpoint starts at step 0."""
    from .checkpoint import load_training_state, read_checkpoint, set_rng_state

    out = trainer.out
    path = out / "latest"
    olds = sorted(out.glob(".latest.old-*"))  # a crash between save_checkpoint's two renames
    if not (path / "config.json").is_file() and olds:
        path = olds[-1]
    if not (path / "config.json").is_file():
        return
    _, _, tokenizer = read_checkpoint(path)
    if tokenizer != trainer.tokenizer:
        raise RunFolderError(f"{trainer.cfg.data} was prepared with another tokenizer than the run {out} was "
                             "trained with")
    state = load_training_state(path, trainer.raw_model, trainer.optimizer, trainer.memory)
    trainer.step, trainer.epoch, trainer.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    trainer.best_val, trainer.bad_evals = state["best_val"], state["bad_evals"]
    set_rng_state(state["rng"])
    hist = out / "history.jsonl"
    if hist.exists():
        history = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()]
        trainer.history = [h for h in history if h["step"] <= trainer.step]


def begin(trainer: Any) -> None:
    """Make the run folder ready for ``trainer`` to write: cleared if asked (``overwrite``), the
    history cut at the resumed step, a TensorBoard writer, ``train_config.json``."""
    from torch.utils.tensorboard import SummaryWriter

    out = trainer.out
    if trainer._clear:  # overwrite: the old run goes now, when the new one starts writing
        clear(out)
        trainer._clear = False
    if trainer.step == 0 and trainer.resumed:  # stopped before any checkpoint: its events go too
        shutil.rmtree(out / "tensorboard", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "history.jsonl", "".join(json.dumps(h) + "\n" for h in trainer.history))
    # on resume, drop events logged after the checkpoint (a killed run may have written some)
    trainer.writer = SummaryWriter(str(out / "tensorboard"), purge_step=trainer.step + 1 if trainer.step else None)
    atomic.write_json(out / "train_config.json", trainer._meta())


def interruption(trainer: Any, name: str) -> TrainingInterrupted:
    """The error to raise once ``latest`` is saved after signal ``name``: where, and how to resume."""
    if trainer.writer is not None:
        trainer.writer.flush()
    message = (f"interrupted by {name} at step {trainer.step}: checkpoint saved in {trainer.out / 'latest'}; "
               f"resume with: {resume_command(trainer.out, trainer.world)}") if trainer.is_main else ""
    return TrainingInterrupted(message, name, trainer.step, 128 + int(getattr(signal, name, signal.SIGTERM)))


class StopSignals:
    """While active, SIGINT and SIGTERM set ``caught`` (the signal's name) instead of stopping.

    The loop checks ``caught`` at each step boundary. A second SIGINT raises KeyboardInterrupt at
    once (no checkpoint); a second SIGTERM terminates. Only the main thread can own signal
    handlers: elsewhere (a notebook's worker thread) this does nothing.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, say: Callable[[str], None] | None = None):
        self.caught: str | None = None
        self._say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._previous: dict = {}

    def _handle(self, signum: int, _frame: FrameType | None):
        name = signal.Signals(signum).name
        self.caught = self.caught or name
        # the next one of the same kind acts at once
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        again = "Ctrl-C again" if signum == signal.SIGINT else "a second SIGTERM"
        self._say(f"{name}: stopping at the end of this step to save a checkpoint ({again} stops at once, unsaved)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                s = getattr(signal, name)
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
        return False
