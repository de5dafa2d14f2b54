"""Callbacks: what a `Trainer` calls at the moments of a run (after Hugging Face's ``TrainerCallback``).

A callback subclasses `Callback` and overrides the moments it cares about::

    class PrintBest(Callback):
        def on_evaluate(self, trainer, metrics):
            print(trainer.step, metrics["loss"], trainer.best_val)

    Trainer(config, model_config, callbacks=[PrintBest()]).train()

They run in the main process only. ``trainer.writer`` is the run's TensorBoard ``SummaryWriter``
(log to it at ``trainer.step``). Around ``on_evaluate`` the trainer keeps its random number
generators and puts the model back into training mode, so a callback that samples music
(`midigen.monitor.MusicMonitor`) cannot change the run's course: a run with callbacks follows
the same losses as one without. The trainer also shows its progress through one
(`ProgressCallback`, attached while ``TrainConfig.progress`` is on).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

# A hook's ``trainer`` is a `midigen.train.Trainer`, typed Any: train is a higher layer, which this
# module may not import, not even for annotations (the import contracts count those too).


class Callback:
    """Override any of these; each gets the `Trainer` (``trainer.step``, ``.writer``, ``.cfg``, ...)."""

    def on_train_begin(self, trainer: Any) -> None:
        """Before the first step of this sitting (``trainer.step`` > 0 on resume)."""

    def on_step_end(self, trainer: Any, record: dict) -> None:
        """After each optimizer step; ``record`` is what was logged (train/loss, train/lr, ...)."""

    def on_evaluate(self, trainer: Any, metrics: dict) -> None:
        """After each validation (before its checkpoint is saved); ``metrics`` as `Trainer.evaluate`."""

    def on_train_end(self, trainer: Any) -> None:
        """After the last step of this sitting (also when stopped early, interrupted or failed)."""


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressCallback(Callback):
    """A progress bar (loss, tokens/s, time left) on a terminal or in a notebook; on a file or a
    pipe, one line per log interval instead (no carriage-return frames), e.g.::

        step 20/900 | loss 2.3141 | lr 2.00e-03 | 14,210 tok/s | 0:00:04 elapsed, 0:03:05 left

    ``stream``: where it writes (default ``sys.stderr``); ``bar``: force the bar (True) or the
    lines (False) rather than asking ``stream.isatty()``.
    """

    def __init__(self, stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream
        self.use_bar = bar
        self._bar = None

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=self.stream or sys.stderr)
        else:
            print(message, file=self.stream or sys.stderr, flush=True)

    def on_train_begin(self, trainer: Any) -> None:
        stream = self.stream or sys.stderr
        use_bar = self.use_bar
        if use_bar is None:  # a terminal, or a notebook (tqdm.auto draws a widget there, not frames)
            use_bar = (bool(getattr(stream, "isatty", lambda: False)())
                       or type(stream).__module__.startswith("ipykernel"))
        self._t0, self._step0 = time.perf_counter(), trainer.step
        self._inv_tps: list[float] = []  # seconds per token of each step since the last line
        if use_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=trainer.cfg.max_steps, initial=trainer.step, desc="train", unit="step",
                             file=stream, dynamic_ncols=True)

    def on_step_end(self, trainer: Any, record: dict) -> None:
        self._inv_tps.append(1.0 / max(record["train/tokens_per_s"], 1e-9))
        if self._bar is not None:
            self._bar.update(1)
        if trainer.step % trainer.cfg.log_interval:
            return
        tps = len(self._inv_tps) / sum(self._inv_tps)  # tokens / time over the interval
        self._inv_tps.clear()
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record['train/loss']:.3f}", lr=f"{record['train/lr']:.2e}",
                                  tok_s=f"{tps:,.0f}")
            return
        elapsed = time.perf_counter() - self._t0
        left = elapsed / max(trainer.step - self._step0, 1) * (trainer.cfg.max_steps - trainer.step)
        self.write(f"step {trainer.step}/{trainer.cfg.max_steps} | loss {record['train/loss']:.4f} | "
                   f"lr {record['train/lr']:.2e} | {tps:,.0f} tok/s | {_clock(elapsed)} elapsed, {_clock(left)} left")

    def on_evaluate(self, trainer: Any, metrics: dict) -> None:
        best = min(trainer.best_val, metrics["loss"])
        self.write(f"step {trainer.step}: valid loss {metrics['loss']:.4f} (best {best:.4f}), "
                   f"perplexity {metrics['perplexity']:.2f}")

    def on_train_end(self, trainer: Any) -> None:  # noqa: ARG002 (the Callback API's signature)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
