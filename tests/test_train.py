"""Training: exact resume, checkpoints (round trip, tampering), NaN stop, TensorBoard, DDP, CLI."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import BACH, ROOT
from midigen.checkpoint import CheckpointError, load_model
from midigen.data.prepare import prepare
from midigen.errors import RunFolderError
from midigen.train import TrainConfig, Trainer, TrainingError

TINY_MODEL = dict(n_layer=2, n_head=2, n_embd=32, dropout=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bach_files):
    d = tmp_path_factory.mktemp("corpus")
    src = d / "src"
    src.mkdir()
    for f in bach_files[:60]:
        shutil.copy(f, src / f.name)
    prepare([src], d / "prepared", workers=0, progress=False, valid_fraction=0.15, test_fraction=0.1)
    return d / "prepared"


def cfg(corpus, out, **kw):
    base = dict(data=str(corpus), out=str(out), batch_size=4, seq_len=32, max_steps=8, eval_interval=4,
                eval_batches=4, warmup_steps=2, lr=3e-3, progress=False, seed=0, device="cpu")
    return TrainConfig(**{**base, **kw})


def losses(run):
    return [h["train/loss"] for h in map(json.loads, (run / "history.jsonl").read_text().splitlines()) if "train/loss" in h]


def test_resume_gives_the_same_losses(corpus, tmp_path):
    Trainer(cfg(corpus, tmp_path / "full"), TINY_MODEL).train()
    Trainer(cfg(corpus, tmp_path / "cut"), TINY_MODEL).train(until=3)  # stopped at step 3
    # a new process would start from scratch: scramble the global RNG to be sure it is restored
    torch.manual_seed(1234)
    t = Trainer(cfg(corpus, tmp_path / "cut"), TINY_MODEL, resume=True)
    assert t.step == 3
    t.train()
    full, cut = losses(tmp_path / "full"), losses(tmp_path / "cut")
    assert len(full) == len(cut) == 8
    assert np.allclose(full, cut, rtol=0, atol=1e-6), (full, cut)


def test_contiguous_batches_shuffle_pieces_when_asked(corpus, tmp_path):
    """``shuffle=True`` streams the pieces in a seeded order (memory study: under one epoch, corpus
    order trains on the alphabetically first pieces only); None keeps the strategy's corpus order."""
    def first_pieces(**kw):
        t = Trainer(cfg(corpus, tmp_path / str(kw), model="xl", **kw), TINY_MODEL)
        return next(iter(t.batches))["piece"][:, 0].tolist()

    plain = first_pieces()
    assert plain == first_pieces(shuffle=False)
    shuffled = first_pieces(shuffle=True)
    assert shuffled != plain and shuffled == first_pieces(shuffle=True)
    assert shuffled != first_pieces(shuffle=True, seed=1)


def test_resume_with_augmentation_gives_the_same_losses(corpus, tmp_path):
    aug = dict(transpose=6, tempo_shift=2, strategy="per_song", batch_size=16)  # 4 batches an epoch: 2 epochs
    Trainer(cfg(corpus, tmp_path / "plain", strategy="per_song", batch_size=16), TINY_MODEL).train()
    Trainer(cfg(corpus, tmp_path / "full", **aug), TINY_MODEL).train()
    Trainer(cfg(corpus, tmp_path / "cut", **aug), TINY_MODEL).train(until=5)
    torch.manual_seed(1234)
    with pytest.raises(RunFolderError, match=r"--transpose 6 \(given 3\)"):  # a run's augmentation is part of it
        Trainer(cfg(corpus, tmp_path / "cut", **{**aug, "transpose": 3}), TINY_MODEL, resume=True)
    t = Trainer(cfg(corpus, tmp_path / "cut", **aug), TINY_MODEL, resume=True)
    assert (t.step, t.epoch) == (5, 1)  # resumed inside the second epoch
    t.train()
    full, cut = losses(tmp_path / "full"), losses(tmp_path / "cut")
    assert np.allclose(full, cut, rtol=0, atol=1e-6), (full, cut)
    assert not np.allclose(full, losses(tmp_path / "plain"), rtol=0, atol=1e-3)  # augmentation changed the batches
    steps = [h for h in map(json.loads, (tmp_path / "full" / "history.jsonl").read_text().splitlines()) if "train/loss" in h]
    assert all(h["augment/notes_dropped"] == 0 and h["augment/pieces_limited"] == 0 for h in steps)
    assert all(h["augment/notes_shifted"] > 0 for h in steps)
    assert "augment/notes_shifted" not in json.dumps([h for h in steps if "valid/loss" in h])  # training only


def test_checkpoint_round_trip_and_tensorboard(corpus, tmp_path):
    t = Trainer(cfg(corpus, tmp_path / "run"), TINY_MODEL)
    metrics = t.train()
    assert {"loss", "perplexity", "bits_per_token"} <= set(metrics)
    assert np.isclose(metrics["bits_per_token"], metrics["loss"] / np.log(2))
    model, tok, meta = load_model(tmp_path / "run" / "latest")
    assert meta["model"] == "gpt" and len(tok) == len(t.tokenizer)
    x = torch.randint(3, len(tok), (2, 16))
    steps = torch.arange(16).repeat(2, 1)
    t.raw_model.eval()
    assert torch.equal(model(x, steps)[0], t.raw_model(x, steps)[0])
    # real TensorBoard event files with the scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "valid/loss"} <= tags
    assert len(acc.Scalars("train/loss")) == 8


def test_truncated_or_tampered_checkpoint_fails_clearly(corpus, tmp_path):
    Trainer(cfg(corpus, tmp_path / "run", max_steps=4), TINY_MODEL).train()
    ckpt = tmp_path / "run" / "latest"
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: checksum mismatch"):
        load_model(ckpt)
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="truncated or was modified"):
        load_model(ckpt)
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError):
        load_model(ckpt)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nowhere")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    t = Trainer(cfg(corpus, tmp_path / "run", max_steps=4), TINY_MODEL)
    t.train()
    good = (tmp_path / "run" / "latest" / "model.safetensors").read_bytes()
    t = Trainer(cfg(corpus, tmp_path / "run", max_steps=50, lr=1e30, warmup_steps=0, grad_clip=1e30), TINY_MODEL, resume=True)
    with pytest.raises(TrainingError, match="loss became .* at step"):
        t.train()
    assert (tmp_path / "run" / "latest" / "model.safetensors").read_bytes() == good
    load_model(tmp_path / "run" / "latest")


def test_ddp_with_two_gloo_processes_matches_one_process(corpus, tmp_path):
    common = ["--data", str(corpus), "--batch-size", "4", "--seq-len", "32", "--max-steps", "6", "--eval-interval", "3",
              "--eval-batches", "2", "--warmup-steps", "2", "--lr", "3e-3", "--device", "cpu", "-q",
              "--n-layer", "2", "--n-head", "2", "--n-embd", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "midigen", "train", "--out", str(tmp_path / "one"), *common],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                          "-m", "midigen", "train", "--out", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes" in two.stdout
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert np.allclose(a, b, rtol=0, atol=1e-4), (a, b)


def test_cli_train_then_generate(corpus, tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "midigen", "train", "--data", str(corpus), "--out", str(run),
                        "--max-steps", "6", "--eval-interval", "3", "--seq-len", "32", "--batch-size", "4",
                        "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "-q"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "valid loss" in r.stdout
    out = tmp_path / "gen.mid"
    r = subprocess.run([sys.executable, "-m", "midigen", "generate", "--checkpoint", str(run), "--out", str(out),
                        "--prompt", str(BACH / "bwv1.6.mid"), "--prompt-beats", "8", "--max-tokens", "100",
                        "--seed", "0", "--num-samples", "2", "--top-p", "0.95"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    from midigen import read_midi

    for i in range(2):
        s = read_midi(tmp_path / f"gen_{i}.mid")
        assert s.n_notes > 0
    r = subprocess.run([sys.executable, "-m", "midigen", "generate", "--checkpoint", str(tmp_path / "missing"), "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 2 and "no such checkpoint" in r.stderr
