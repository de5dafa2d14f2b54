"""A training monitor that listens: at each evaluation, music from the model, in TensorBoard.

`MusicMonitor` is a `midigen.callbacks.Callback`. At each evaluation it continues the opening of
a validation piece (its first ``monitor_prompt_beats`` beats; the same piece and seed every time,
so what changes is the model), and writes to the run's TensorBoard::

    monitor/sample_I              the sample as audio (add_audio; `midigen.playback.render`)
    monitor/piano_roll_I          its piano roll (add_figure; the dashed line ends the prompt)
    monitor/sample/STATISTIC      its music statistics (`midigen.metrics`; the mean over samples)
    monitor/data/STATISTIC        the same statistics of the validation pieces, to compare with
    monitor/statistics            both side by side, as a table (add_text)
    monitor/seconds               what the monitor cost at this evaluation

The validation loss by token kind (``valid/loss_by_kind/note``, ...) comes from the trainer itself.
It sits at the playback level (it renders audio), above `midigen.train`, which knows nothing of
it: ``midigen train`` attaches it (``--monitor-samples 0`` switches it off) and a notebook can::

    Trainer(config, model_config, callbacks=[MusicMonitor(monitor_samples=1)]).train()

The trainer keeps its random number generators around callbacks, so a monitored run follows the
same losses as an unmonitored one. Samples are short (``monitor_tokens``) to cost little: about
half a second per evaluation on a CPU for a small model (see the README).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .callbacks import Callback
from .config import JSONConfig, opt

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from .encoding import Tokens
    from .midi import Score
    from .train import Trainer

MAX_DATA_PIECES = 32  # validation pieces whose statistics are the reference


@dataclass
class MonitorConfig(JSONConfig):
    monitor_samples: int = opt(1, "pieces sampled at each evaluation from validation openings, heard and seen in "
                                  "TensorBoard (0: no music monitor)")
    monitor_tokens: int = opt(96, "tokens each monitor sample adds to its prompt")
    monitor_prompt_beats: float = opt(4.0, "beats of the validation piece the monitor gives as the prompt")
    monitor_temperature: float = opt(1.0, "sampling temperature of the monitor's samples")
    monitor_sample_rate: int = opt(16000, "sample rate of the monitor's audio (Hz)")
    monitor_seconds: float = opt(12.0, "audio cut after this many seconds (an untrained model may hold notes long)")

    def __post_init__(self):
        super().__post_init__()
        for name in ("monitor_samples", "monitor_tokens", "monitor_sample_rate"):
            if getattr(self, name) < (0 if name == "monitor_samples" else 1):
                raise ValueError(f"{name} must be >= {0 if name == 'monitor_samples' else 1}, "
                                 f"got {getattr(self, name)}")
        if min(self.monitor_prompt_beats, self.monitor_temperature, self.monitor_seconds) <= 0:
            raise ValueError("monitor_prompt_beats, monitor_temperature and monitor_seconds must be > 0")


class MusicMonitor(Callback):
    """At each evaluation: samples from held-out prompts as audio, piano rolls and statistics."""

    def __init__(self, config: MonitorConfig | None = None, **overrides):
        self.cfg = (config or MonitorConfig()).replace(**overrides)
        self._prompts = None
        self._data_stats: dict | None = None
        self.seconds: list[float] = []  # the cost of each evaluation's monitoring

    def _setup(self, trainer: Trainer) -> None:
        from .generate import prompt_from_midi
        from .metrics import SCALAR_STATS, music_statistics

        tok, valid = trainer.tokenizer, trainer.valid_data
        spb = tok.config.steps_per_beat
        pieces = [tok.decode(np.asarray(valid.piece(i)[0])) for i in range(min(len(valid), MAX_DATA_PIECES))]
        stats = [music_statistics(s, spb) for s in pieces if s.n_notes]
        self._data_stats = {k: float(np.nanmean([s[k] for s in stats])) if stats else float("nan")
                            for k in SCALAR_STATS}
        n = self.cfg.monitor_samples
        self._prompts = [prompt_from_midi(pieces[i % len(pieces)], tok, beats=self.cfg.monitor_prompt_beats)
                         for i in range(n)] if pieces else []

    def on_evaluate(self, trainer: Trainer, metrics: dict) -> None:  # noqa: ARG002 (the Callback API's signature)
        if self.cfg.monitor_samples <= 0 or trainer.writer is None:
            return
        t0 = time.perf_counter()
        if self._prompts is None:
            self._setup(trainer)
        from .metrics import SCALAR_STATS, music_statistics

        writer, step, tok = trainer.writer, trainer.step, trainer.tokenizer
        stats = []
        for i, prompt in enumerate(self._prompts):
            score = self._sample(trainer, prompt, seed=i)
            self._audio(writer, f"monitor/sample_{i}", score, step)
            self._piano_roll(writer, f"monitor/piano_roll_{i}", score, step)
            if score.n_notes:
                stats.append(music_statistics(score, tok.config.steps_per_beat))
        rows = []
        for k in SCALAR_STATS:
            mine = (float(np.nanmean([s[k] for s in stats])) if stats and np.isfinite([s[k] for s in stats]).any()
                    else float("nan"))
            writer.add_scalar(f"monitor/sample/{k}", mine, step)
            writer.add_scalar(f"monitor/data/{k}", self._data_stats[k], step)
            rows.append(f"| {k} | {mine:.3f} | {self._data_stats[k]:.3f} |")
        writer.add_text("monitor/statistics", f"step {step}: {len(stats)} samples vs {MAX_DATA_PIECES} validation "
                        "pieces at most\n\n| statistic | samples | data |\n|---|---|---|\n" + "\n".join(rows), step)
        self.seconds.append(time.perf_counter() - t0)
        writer.add_scalar("monitor/seconds", self.seconds[-1], step)

    def _sample(self, trainer: Trainer, prompt: Tokens, seed: int) -> Score:
        from .generate import generate

        (toks,) = generate(trainer.raw_model, trainer.tokenizer, prompt, max_new_tokens=self.cfg.monitor_tokens,
                           temperature=self.cfg.monitor_temperature, seed=seed)
        return trainer.tokenizer.decode(toks.ids)

    def _audio(self, writer: SummaryWriter, tag: str, score: Score, step: int) -> None:
        import torch

        from .errors import PlaybackError
        from .playback import render

        rate = self.cfg.monitor_sample_rate
        try:
            with warnings.catch_warnings():  # (sine waves only where no SoundFont synthesiser is installed)
                warnings.simplefilter("ignore")
                audio = (render(score, rate, fallback=True, seconds=self.cfg.monitor_seconds) if score.n_notes
                         else np.zeros(rate // 10, np.float32))
        except PlaybackError as exc:  # a broken SoundFont must not stop the training
            writer.add_text(tag, f"no audio: {exc}", step)
            return
        writer.add_audio(tag, torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None], step, sample_rate=rate)

    def _piano_roll(self, writer: SummaryWriter, tag: str, score: Score, step: int) -> None:
        from matplotlib.figure import Figure

        from .playback import piano_roll

        fig = Figure(figsize=(8, 3), dpi=80)  # no pyplot: a notebook's figures are left alone
        ax = fig.subplots()
        piano_roll(score, ax=ax, mark=self.cfg.monitor_prompt_beats,
                   title=f"step {step}: {self.cfg.monitor_prompt_beats:g} beats of a validation piece, then the model")
        fig.tight_layout()
        writer.add_figure(tag, fig, step, close=True)
