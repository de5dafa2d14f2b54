"""The training monitor: validation loss by token kind, and music (audio, piano roll, statistics)
from a held-out prompt in TensorBoard's own event files; callbacks do not change the run."""

import io
import json
import shutil

import numpy as np
import pytest
import torch

from midigen.callbacks import Callback, ProgressCallback
from midigen.data import PreparedCorpus
from midigen.data.prepare import prepare
from midigen.encoding import KIND_NAMES
from midigen.metrics import likelihood
from midigen.monitor import MonitorConfig, MusicMonitor
from midigen.train import TrainConfig, Trainer, default_model_config

SIZE = {"n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bach_files):
    d = tmp_path_factory.mktemp("monitor_corpus")
    (d / "src").mkdir()
    for f in bach_files[:24]:
        shutil.copy(f, d / "src" / f.name)
    prepare([d / "src"], d / "prepared", workers=0, progress=False, valid_fraction=0.2, test_fraction=0.1)
    return d / "prepared"


def cfg(corpus, out):
    return TrainConfig(data=str(corpus), out=str(out), batch_size=4, seq_len=32, max_steps=4, eval_interval=2,
                       eval_batches=2, warmup_steps=1, lr=3e-3, progress=False, device="cpu")


def test_likelihood_splits_the_loss_by_token_kind(corpus):
    from midigen.model import build_model

    valid = PreparedCorpus(corpus, "valid")
    torch.manual_seed(0)
    model = build_model("gpt", default_model_config(valid.tokenizer, 32, n_layer=1, n_head=2, n_embd=16).to_dict())
    m = likelihood(model, valid, batch_size=4, seq_len=32, per_token=True)
    kinds = m["by_kind"]
    assert {"note", "duration", "gap", "special"} <= set(kinds)
    assert sum(k["tokens"] for k in kinds.values()) == m["tokens"]
    # the token-weighted mean of the kinds is the loss
    assert np.isclose(sum(k["loss"] * k["tokens"] for k in kinds.values()) / m["tokens"], m["loss"], rtol=1e-6)
    # each kind's loss is the mean of the per-token losses of the targets of that kind, in context
    # every token is a target once (but each piece's <sos>); a duration after <sep> is a gap
    pieces = [valid.tokenizer.token_kinds(np.asarray(valid.piece(i)[0]))[1:] for i in range(len(valid))]
    for name in ("note", "duration", "gap"):
        assert kinds[name]["tokens"] == sum(int((k == KIND_NAMES.index(name)).sum()) for k in pieces), name


class Steps(Callback):
    def __init__(self):
        self.seen = []

    def on_step_end(self, trainer, record):
        self.seen.append(("step", record["step"]))

    def on_evaluate(self, trainer, metrics):
        torch.rand(1000)  # a callback that draws random numbers must not change the run
        self.seen.append(("evaluate", trainer.step, round(metrics["loss"], 6)))


def test_monitor_writes_kind_losses_audio_image_and_statistics_to_tensorboard(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = Steps()
    monitor = MusicMonitor(MonitorConfig(monitor_tokens=24, monitor_sample_rate=8000))
    Trainer(cfg(corpus, tmp_path / "watched"), SIZE, callbacks=[monitor, steps]).train()
    Trainer(cfg(corpus, tmp_path / "plain"), SIZE).train()
    assert [s for s in steps.seen if s[0] == "evaluate"] and len(steps.seen) == 6
    assert len(monitor.seconds) == 2
    # watched and plain runs: the same losses
    def losses(run):
        return [h.get("train/loss", h.get("valid/loss")) for h in map(json.loads, (run / "history.jsonl").read_text().splitlines())]

    assert losses(tmp_path / "watched") == losses(tmp_path / "plain")

    acc = EventAccumulator(str(tmp_path / "watched" / "tensorboard"), size_guidance={"audio": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for kind in ("note", "duration", "gap"):
        assert [e.step for e in acc.Scalars(f"valid/loss_by_kind/{kind}")] == [2, 4]
    audio = acc.Audio("monitor/sample_0")
    assert [e.step for e in audio] == [2, 4] and audio[0].sample_rate == 8000
    assert audio[0].encoded_audio_string[:4] == b"RIFF" and audio[0].length_frames > 0
    images = acc.Images("monitor/piano_roll_0")
    assert [e.step for e in images] == [2, 4] and images[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    assert images[0].width > 100 and images[0].height > 50
    for stat in ("pitch_range", "note_density"):
        assert len(acc.Scalars(f"monitor/sample/{stat}")) == 2
        data = acc.Scalars(f"monitor/data/{stat}")[0].value
        assert np.isfinite(data) and data > 0
    assert "monitor/statistics/text_summary" in tags["tensors"]
    text = acc.Tensors("monitor/statistics/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| pitch_range |" in text


def test_monitor_config_checks():
    assert MonitorConfig().monitor_samples == 1
    with pytest.raises(ValueError, match="monitor_tokens"):
        MonitorConfig(monitor_tokens=0)


def test_progress_bar_shows_loss_tokens_per_second_and_time_left(corpus, tmp_path):
    out = io.StringIO()
    Trainer(cfg(corpus, tmp_path / "run").replace(log_interval=2), SIZE, callbacks=[ProgressCallback(out, bar=True)]).train()
    text = out.getvalue()
    assert "\r" in text and "4/4" in text and "loss=" in text and "tok_s=" in text
    assert "<00:00" in text  # tqdm's elapsed<left
    assert "step 4: valid loss" in text
