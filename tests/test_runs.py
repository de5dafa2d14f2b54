"""Runs never lose work: resume from the run folder alone, refusal and --overwrite, settings that
must agree on resume, SIGINT/SIGTERM in a real subprocess (checkpoint, resume command, the same
losses as an uninterrupted run), and progress lines (not bar frames) when the output is a file."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from midigen.data.prepare import prepare
from midigen.errors import RunFolderError
from midigen.train import TrainConfig, Trainer

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--dropout", "0.1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bach_files):
    d = tmp_path_factory.mktemp("runs_corpus")
    (d / "src").mkdir()
    for f in bach_files[:30]:
        shutil.copy(f, d / "src" / f.name)
    prepare([d / "src"], d / "prepared", workers=0, progress=False, valid_fraction=0.15, test_fraction=0.1)
    return d / "prepared"


def midigen(*args, **kw):
    return subprocess.run([sys.executable, "-m", "midigen", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False, **kw)


def train_args(corpus, out, *more):
    return ["train", "--data", corpus, "--out", out, "--batch-size", "4", "--seq-len", "32", "--warmup-steps", "2",
            "--lr", "3e-3", "--eval-batches", "2", "--device", "cpu", "--monitor-samples", "0", *TINY, *more]


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def train_losses(run) -> list[float]:
    return [h["train/loss"] for h in history(run) if "train/loss" in h]


def one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("midigen train: error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_progress_lines_refusal_overwrite_and_resume_from_the_folder_alone(corpus, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "train.log"
    with open(log, "w") as f:  # stdout and stderr to a file: lines, not bar frames
        r = subprocess.run([sys.executable, "-m", "midigen",
                            *map(str, train_args(corpus, run, "--max-steps", "6", "--eval-interval", "3", "--log-interval", "2"))],
                           stdout=f, stderr=subprocess.STDOUT, timeout=600, check=False)
    assert r.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text
    assert re.findall(r"^step (\d+)/6 \| loss [\d.]+ \| lr .* tok/s \| .* elapsed, .* left$", text, re.MULTILINE) == ["2", "4", "6"]
    assert len(re.findall(r"^step \d+: valid loss", text, re.MULTILINE)) >= 2
    before = (run / "history.jsonl").read_text()

    # the same command on the run folder: refused, and nothing touched
    one_line_error(midigen(*train_args(corpus, run, "--max-steps", "6")), str(run), "--resume", "--overwrite")
    assert (run / "history.jsonl").read_text() == before

    # the run folder alone is enough; max_steps may change; a given flag that agrees is fine
    r = midigen("train", "--resume", run, "--max-steps", "8", "--seq-len", "32", "-q")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "at step 6" in r.stdout and "--max-steps 6 -> 8" in r.stdout
    assert [h["step"] for h in history(run) if "train/loss" in h] == list(range(1, 9))
    meta = json.loads((run / "latest" / "config.json").read_text())
    assert meta["model_config"]["n_layer"] == 1 and meta["train_config"]["max_steps"] == 8

    # settings that define the run must agree: every difference is listed, in one line
    one_line_error(midigen("train", "--resume", run, "--n-layer", "2", "--seq-len", "16", "--batch-size", "4"),
                   "--n-layer 1 (given 2)", "--seq-len 32 (given 16)")
    one_line_error(midigen("train", "--resume", tmp_path / "nothing"), "nothing to resume")

    # --overwrite clears the run (and only the run's own files) and starts again
    (run / "notes.txt").write_text("mine")
    r = midigen(*train_args(corpus, run, "--max-steps", "2", "--eval-interval", "2", "--overwrite", "-q"))
    assert r.returncode == 0, r.stderr
    assert [h["step"] for h in history(run) if "train/loss" in h] == [1, 2]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (run / "notes.txt").read_text() == "mine"


def test_python_api_refuses_resumes_and_overwrites(corpus, tmp_path):
    cfg = TrainConfig(data=str(corpus), out=str(tmp_path / "run"), batch_size=4, seq_len=32, max_steps=4, eval_interval=2,
                      eval_batches=2, warmup_steps=1, progress=False, device="cpu")
    size = {"n_layer": 1, "n_head": 2, "n_embd": 32}
    with pytest.raises(RunFolderError, match="nothing to resume"):
        Trainer(cfg, size, resume=True)
    Trainer(cfg, size).train(until=2)
    with pytest.raises(RunFolderError, match="holds a run already"):
        Trainer(cfg, size)
    with pytest.raises(RunFolderError, match=r"--seed 0 \(given 1\).*--n-embd 32 \(given 64\)"):
        Trainer(cfg.replace(seed=1), dict(size, n_embd=64), resume=True)
    t = Trainer.from_run(tmp_path / "run", max_steps=6)
    assert (t.step, t.cfg.max_steps, t.model_config.n_embd, t.resume_changes) == (2, 6, 32, {"max_steps": (4, 6)})
    t.train()
    assert train_losses(tmp_path / "run") and len(train_losses(tmp_path / "run")) == 6
    Trainer(cfg, size, overwrite=True).train(until=1)
    assert len(train_losses(tmp_path / "run")) == 1
    # killed (kill -9) before its first checkpoint: resume starts again at step 0, with the run's settings
    for name in ("latest", "best"):
        shutil.rmtree(tmp_path / "run" / name)
    t = Trainer.from_run(tmp_path / "run")
    assert t.step == 0 and t.cfg.max_steps == 4
    t.train(until=1)
    assert len(train_losses(tmp_path / "run")) == 1
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def _start(args):
    return subprocess.Popen([sys.executable, "-m", "midigen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _steps_logged(run) -> int:
    """Training steps in the history so far (complete lines only: the run is writing it)."""
    path = run / "history.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    return sum('"train/loss"' in line for line in lines)


def _stop_after(proc, run, step: int, sig) -> tuple[int, str, str]:
    """Wait until the run has logged ``step`` training steps, then send ``sig``; returns (rc, out, err)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if _steps_logged(run) >= step:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_sigint_and_sigterm_save_and_resume_to_the_same_losses(corpus, tmp_path):
    steps, every = 300, 150
    run = tmp_path / "run"
    args = train_args(corpus, run, "--max-steps", steps, "--eval-interval", every, "-q")
    # Ctrl-C before the first checkpoint
    rc, _, err = _stop_after(_start(args), run, 3, signal.SIGINT)
    assert rc == 130, err
    reached = json.loads((run / "latest" / "trainer_state.json").read_text())["step"]
    assert 3 <= reached < every and "Traceback" not in err
    assert f"interrupted by SIGINT at step {reached}" in err and f"resume with: midigen train --resume {run}" in err
    assert len(train_losses(run)) == reached
    assert not (run / "best").exists()  # no evaluation happened: only the interrupted step's checkpoint
    # resume, then SIGTERM (a scheduler's pre-emption) after the first evaluation
    rc, _, err = _stop_after(_start(["train", "--resume", run, "-q"]), run, every + 5, signal.SIGTERM)
    assert rc == 143, err
    reached = json.loads((run / "latest" / "trainer_state.json").read_text())["step"]
    assert every + 5 <= reached < steps and f"interrupted by SIGTERM at step {reached}" in err
    assert (run / "best").is_dir()
    r = midigen("train", "--resume", run, "-q")
    assert r.returncode == 0, r.stderr
    # the same run uninterrupted (in this process): the same losses at every step
    cfg = TrainConfig(data=str(corpus), out=str(tmp_path / "straight"), batch_size=4, seq_len=32, warmup_steps=2, lr=3e-3,
                      eval_batches=2, device="cpu", max_steps=steps, eval_interval=every, progress=False)
    Trainer(cfg, {"n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.1}).train()
    a, b = train_losses(tmp_path / "straight"), train_losses(run)
    assert [h["step"] for h in history(run) if "train/loss" in h] == list(range(1, steps + 1))
    assert np.allclose(a, b, rtol=0, atol=1e-5), np.abs(np.subtract(a, b)).max()
    va = [h["valid/loss"] for h in history(tmp_path / "straight") if "valid/loss" in h]
    vb = [h["valid/loss"] for h in history(run) if "valid/loss" in h]
    assert len(va) == len(vb) == 2 and np.allclose(va, vb, rtol=0, atol=1e-5)
