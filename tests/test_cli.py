"""The `midigen` command line, end to end in subprocesses."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BACH, BUNDLED_MODEL, ROOT
from midigen import cli
from midigen.flags import default_of, show
from midigen.model import GPTConfig


def midigen(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "midigen", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_console_script_installed():
    exe = Path(sys.executable).parent / "midigen"
    assert exe.exists() or shutil.which("midigen"), "the midigen console script is not installed"


def test_check_bach_and_shared_corpus(tmp_path, shared_corpus):
    out = tmp_path / "report.json"
    r = midigen("check", BACH, shared_corpus, "--json", out, "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    for key in ("files", "ok", "failed", "note_f1_min", "note_f1_mean"):
        assert key in report
    assert report["files"] == report["ok"] + len(report["failed"])
    assert report["ok"] >= 429
    assert report["note_f1_min"] == 1.0 and report["note_f1_mean"] == 1.0
    for f in report["failed"]:
        assert f["path"] and f["error"]


def test_check_prints_failures_and_summary_and_the_table_with_verbose(tmp_path):
    shutil.copy(BACH / "bwv1.6.mid", tmp_path / "good.mid")
    (tmp_path / "bad.mid").write_bytes(b"garbage")
    r = midigen("check", tmp_path, "--blog")
    assert r.returncode == 0, r.stderr
    assert "bad.mid" in r.stdout and "not a MIDI file" in r.stdout
    assert "good.mid" not in r.stdout  # a file that round-trips is in the summary, not listed
    assert "2 files: 1 ok, 1 failed" in r.stdout
    r = midigen("check", tmp_path, "--blog", "--verbose")
    assert r.returncode == 0, r.stderr
    good = next(line for line in r.stdout.splitlines() if "good.mid" in line)
    assert "1.0000" in good and "90->90" in good  # note F1, velocities before -> after
    assert "bad.mid" in r.stdout and "not a MIDI file" in r.stdout
    assert "2 files: 1 ok, 1 failed" in r.stdout


def test_check_400_files_prints_a_progress_bar_and_a_summary_not_a_table(tmp_path):
    r = midigen("check", BACH, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "409/409" in r.stderr  # the progress bar
    lines = r.stdout.strip().splitlines()
    assert len(lines) <= 3, r.stdout  # the summary and where the report went
    assert lines[0].startswith("409 files: 409 ok, 0 failed") and "note F1 min 1.0000" in lines[0]
    assert "tempo off by up to" in lines[0] and "velocity bins kept: at least 100.0% of notes per file" in lines[0]
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["results"]) == 409  # the full table is always in the JSON
    assert {"tempo_error_pct", "dynamics_flattened", "ticks_per_quarter"} <= set(report["results"][0]["changes"])


def test_check_quiet_prints_only_the_summary_line():
    r = midigen("check", BACH / "bwv1.6.mid", BACH / "bwv10.7.mid", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [r.stdout.strip()] and r.stdout.startswith("2 files: 2 ok, 0 failed")
    assert r.stderr == ""  # no progress bar


def test_check_a_folder_that_does_not_exist_is_a_one_line_error(tmp_path):
    r = midigen("check", BACH, "../my-midi", cwd=tmp_path)
    line = _one_line_error(r, "check", "../my-midi", "no such file or folder")
    assert str(BACH) not in line  # only the missing one is named
    assert r.stdout == ""  # nothing checked


def test_check_takes_the_bundled_corpus_by_name(tmp_path):
    r = midigen("check", "bach", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("409 files: 409 ok")


def test_check_with_no_files_fails(tmp_path):
    r = midigen("check", tmp_path, "-q")
    assert r.returncode == 2
    assert "no MIDI files" in r.stderr


def test_encode_prints_tokens():
    r = midigen("encode", BACH / "bwv1.6.mid", "--limit", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<sos> t")  # the tempo opens the piece
    assert "tokens" in r.stderr


def test_encode_bad_file_names_it(tmp_path):
    p = tmp_path / "x.mid"
    p.write_bytes(b"")
    r = midigen("encode", p)
    assert r.returncode == 2
    assert str(p) in r.stderr and "empty" in r.stderr
    assert r.stderr.startswith("midigen encode: error: ") and "Traceback" not in r.stderr


def test_export_corpus(tmp_path):
    r = midigen("export-corpus", "--composer", "bach", "--out", tmp_path / "bach", "--limit", "2", "--workers", "1")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "bach").glob("*.mid"))
    assert len(files) == 2
    r = midigen("check", tmp_path / "bach", "-q", "--json", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["note_f1_min"] == 1.0


# ---------------------------------------------------------------- flags made from the configs


def _configs_of(command):
    """The config classes whose fields must all be flags of ``command``."""
    from midigen.data.prepare import PrepareConfig
    from midigen.encoding import EncodingConfig
    from midigen.evaluate import EvaluateConfig
    from midigen.generate import SamplingConfig
    from midigen.train import TrainConfig

    return {"train": (TrainConfig, GPTConfig), "prepare": (PrepareConfig, EncodingConfig),
            "generate": (SamplingConfig,), "evaluate": (EvaluateConfig,), "check": (EncodingConfig,),
            "encode": (EncodingConfig,)}[command]


def _fields(classes):
    seen = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            seen.setdefault(f.name, f)
    return list(seen.values())


@pytest.mark.parametrize("command", ["train", "prepare", "generate", "evaluate", "check", "encode"])
def test_help_lists_every_config_field_with_its_default(command):
    r = midigen(command, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # (argparse wraps lines anywhere)
    assert "--config FILE.json" in text
    for f in _fields(_configs_of(command)):
        name = "--" + f.name.replace("_", "-")
        entry = text[text.index(f" {name}"):]
        entry = entry[: entry.index("(default: ") + len("(default: ") + 40]
        assert f"(default: {show(default_of(f))})" in entry, (name, entry)
        if f.type in (bool, "bool"):
            assert f" --no-{f.name.replace('_', '-')}" in text, name


def _non_default(f):
    """A valid value other than the field's default (the test fails for a field it does not know)."""
    values = {
        # TrainConfig
        "data": "some/corpus", "out": "runs/elsewhere", "model": "xl+knn", "strategy": "contiguous", "location": "ram",
        "batch_size": 6, "grad_accum": 3, "seq_len": 48, "max_steps": 77, "lr": 1e-3, "min_lr": 2e-5, "warmup_steps": 9,
        "weight_decay": 0.05, "beta1": 0.8, "beta2": 0.99, "grad_clip": 0.5, "eval_interval": 11, "eval_batches": 3,
        "patience": 4, "log_interval": 2, "seed": 123, "device": "cpu", "compile": True, "progress": False,
        "transpose": 5, "tempo_shift": 1, "shuffle": True, "init_from": "runs/base",
        # model configs
        "vocab_size": 400, "block_size": 48, "n_layer": 3, "n_head": 2, "n_embd": 64, "dropout": 0.2, "bias": True,
        "tie_weights": False, "position": "rotary", "musical": False, "steps_per_bar": 12, "max_bars": 64,
        "rope_base": 500.0, "xl_memory": 24, "knn_layers": (0, 2), "knn_capacity": 512, "knn_topk": 8, "knn_gate": -2.0, "knn_search": "faiss",
        "sounding": True,
    }
    assert f.name in values, f"test_cli: give the new field {f.name!r} a non-default value here"
    assert values[f.name] != default_of(f), f.name
    return values[f.name]


@pytest.mark.parametrize("shape", ["sections", "flat"])
def test_a_config_file_sets_every_train_and_model_field(tmp_path, shape):
    from midigen.train import TrainConfig

    model_fields = _fields((GPTConfig,))
    train = {f.name: _non_default(f) for f in dataclasses.fields(TrainConfig)}
    model = {f.name: _non_default(f) for f in model_fields}
    conf = {"train": train, "model": model} if shape == "sections" else {**train, **model}
    path = tmp_path / "conf.json"
    path.write_text(json.dumps(conf))
    args, cfg = cli.parse(["train", "--config", str(path)])
    assert cfg["train"] == TrainConfig(**train)
    assert cfg["model"] == model
    built = GPTConfig.from_dict(cfg["model"])
    for name, value in model.items():
        assert getattr(built, name) == value, name
    # flags override the file; older flag names still work
    args, cfg = cli.parse(["train", "--config", str(path), "--lr", "0.5", "--knn-layers", "1", "--musical", "-q"])
    assert cfg["train"].lr == 0.5 and cfg["train"].progress is False and cfg["train"].max_steps == 77
    assert cfg["model"]["knn_layers"] == (1,) and cfg["model"]["musical"] is True
    args, cfg = cli.parse(["train", "--no-musical", "--model", "xl", "--knn-layers", "0,1", "--eval-batches", "0",
                           "--patience", "none"])
    assert cfg["model"] == {"musical": False, "knn_layers": (0, 1)}
    assert cfg["train"].model == "xl" and cfg["train"].eval_batches is None and cfg["train"].patience is None


def test_config_files_and_flags_of_the_other_commands(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"encoding": {"steps_per_beat": 8, "tempo": False}, "workers": 0, "bpe_vocab": 500}))
    args, cfg = cli.parse(["prepare", "src", "--out", "o", "--config", str(path), "--max-pitch", "100", "--no-instruments",
                           "--start-method", "spawn", "-q"])
    enc, prep = cfg["encoding"], cfg["prepare"]
    assert (enc.steps_per_beat, enc.tempo, enc.max_pitch, enc.instruments) == (8, False, 100, False)
    assert (prep.workers, prep.bpe_vocab, prep.start_method, prep.progress) == (0, 500, "spawn", False)
    args, cfg = cli.parse(["check", "x", "--blog", "--max-duration", "300", "--max-silence", "none"])
    assert (cfg["encoding"].instruments, cfg["encoding"].tempo, cfg["encoding"].max_silence) == (False, False, None)
    assert cli.parse(["encode", "x", "--max-duration", "300"])[1]["encoding"].max_silence == 300  # room for long notes
    path.write_text(json.dumps({"sampling": {"top_p": 0.9}, "temperature": 0.7}))
    args, cfg = cli.parse(["generate", "--checkpoint", "c", "--out", "o.mid", "--config", str(path), "--max-tokens", "64",
                           "--no-constrained"])
    s = cfg["sampling"]
    assert (s.top_p, s.temperature, s.max_new_tokens, s.constrained, s.seed) == (0.9, 0.7, 64, False, None)
    args, cfg = cli.parse(["evaluate", "--checkpoint", "c", "--data", "d", "--split", "valid", "--max-tokens", "32",
                           "--max-batches", "5", "-q"])
    e = cfg["evaluate"]
    assert (e.split, e.max_new_tokens, e.max_batches, e.progress, e.samples) == ("valid", 32, 5, False, 16)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, bach_files):
    from midigen.data.prepare import prepare

    d = tmp_path_factory.mktemp("cli_corpus")
    (d / "src").mkdir()
    for f in bach_files[:24]:
        shutil.copy(f, d / "src" / f.name)
    prepare([d / "src"], d / "prepared", workers=0, progress=False, valid_fraction=0.2, test_fraction=0.1)
    return d / "prepared"


def test_train_from_a_config_file_in_a_subprocess(tmp_path, tiny_corpus):
    conf = {"train": {"data": str(tiny_corpus), "out": str(tmp_path / "from_file"), "max_steps": 2, "eval_interval": 2,
                      "eval_batches": 1, "batch_size": 2, "seq_len": 16, "warmup_steps": 1, "device": "cpu", "seed": 7},
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "musical": False, "position": "rotary", "max_bars": 64}}
    path = tmp_path / "conf.json"
    path.write_text(json.dumps(conf))
    run = tmp_path / "run"
    r = midigen("train", "--config", path, "--out", run, "--lr", "0.002", "-q")  # flags override the file
    assert r.returncode == 0, r.stderr
    meta = json.loads((run / "train_config.json").read_text())
    assert meta["train_config"] == {**meta["train_config"], **conf["train"], "out": str(run), "lr": 0.002, "progress": False}
    assert meta["model_config"] == {**meta["model_config"], **conf["model"], "block_size": 16}
    assert not (tmp_path / "from_file").exists()


# ---------------------------------------------------------------- one kind of user error


def _one_line_error(r, command, *names):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"midigen {command}: error: "), r.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def test_user_errors_are_one_line_naming_the_file_or_flag(tmp_path, tiny_corpus):
    out = tmp_path / "x"
    _one_line_error(midigen("train", "--data", BACH, "--out", out), "train", BACH, "not a prepared corpus")
    assert not out.exists()
    _one_line_error(midigen("generate", "--checkpoint", BUNDLED_MODEL, "--out", tmp_path / "x.mid",
                            "--prompt", "nope.mid"), "generate", "nope.mid", "no such file")
    _one_line_error(midigen("train", "--config", tmp_path / "nope.json"), "train", "--config", "nope.json")
    _one_line_error(midigen("generate", "--checkpoint", "c", "--out", "o.mid", "--config", tmp_path / "nope.json"),
                    "generate", "nope.json")
    _one_line_error(midigen("train", "--data", tiny_corpus, "--out", out, "--n-embd", "100", "--n-head", "3"),
                    "train", "--n-embd", "--n-head")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {"lr": 0.1}, "model": {"n_layers": 3}}))
    _one_line_error(midigen("train", "--config", bad), "train", str(bad), "n_layers")
    bad.write_text(json.dumps({"temprature": 0.5}))
    _one_line_error(midigen("generate", "--checkpoint", "c", "--out", "o.mid", "--config", bad), "generate", "temprature")
    bad.write_text(json.dumps({"lr": "fast"}))
    _one_line_error(midigen("train", "--config", bad), "train", str(bad), "lr", "fast")
    _one_line_error(midigen("prepare", BACH, "--out", out, "--valid-fraction", "0.7", "--test-fraction", "0.5"),
                    "prepare", "--valid-fraction")
    _one_line_error(midigen("train", "--lr", "fast"), "train", "--lr")  # argparse's own errors: one line too
    _one_line_error(midigen("train", "--model", "big"), "train", "--model")
    _one_line_error(midigen("generate", "--checkpoint", tmp_path / "missing", "--out", "o.mid"), "generate", "missing")
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    r = midigen("--debug", "encode", tmp_path / "nope.mid")
    assert r.returncode == 1 and "Traceback" in r.stderr and "MidiError" in r.stderr


def test_a_device_this_machine_lacks_is_a_user_error(tmp_path, tiny_corpus):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _one_line_error(midigen("train", "--data", tiny_corpus, "--out", tmp_path / "r", "--device", "cuda"),
                    "train", "--device cuda", "CUDA")
    _one_line_error(midigen("generate", "--checkpoint", BUNDLED_MODEL, "--out", tmp_path / "x.mid",
                            "--device", "cuda"), "generate", "--device cuda")
    _one_line_error(midigen("evaluate", "--checkpoint", BUNDLED_MODEL, "--data", tiny_corpus,
                            "--device", "cuda:1"), "evaluate", "--device cuda:1")


def test_export_model_in_16_bits_loads_back_into_float32(tmp_path):
    """`midigen export-model`: the bundled model (float16 weights) to float32 and back: twice the
    bytes, then the same bytes and the same predictions as the bundled one (float16 -> float32 ->
    float16 is exact)."""
    import torch

    from midigen.checkpoint import load_model

    r = midigen("export-model", "--checkpoint", "bach-gpt", "--out", tmp_path / "full", "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    r = midigen("export-model", "--checkpoint", tmp_path / "full", "--out", tmp_path / "half")
    assert r.returncode == 0, r.stderr
    assert "weights in float16" in r.stdout
    weights = lambda p: (p / "model.safetensors").stat().st_size  # noqa: E731
    assert 1.9 * weights(BUNDLED_MODEL) < weights(tmp_path / "full") and weights(tmp_path / "half") == weights(BUNDLED_MODEL)
    bundled, tok, meta = load_model("bach-gpt")
    full, _, _ = load_model(tmp_path / "full")
    half, tok2, meta2 = load_model(tmp_path / "half")
    assert meta["weights_dtype"] == meta2["weights_dtype"] == "float16" and tok2 == tok
    assert next(half.parameters()).dtype == torch.float32
    t = tok.encode(sorted(BACH.glob("*.mid"))[0])
    ids = torch.as_tensor(t.ids[:200].astype("int64"))[None]
    steps = torch.as_tensor(t.steps[:200].astype("int64"))[None]
    from midigen.encoding.sounding import sounding

    state = torch.as_tensor(sounding(t.ids[:200], t.steps[:200], tok))[None]
    with torch.no_grad():
        a, b, c = (m(ids, steps, sounding=state)[0] for m in (bundled, full, half))
    assert torch.equal(a, b) and torch.equal(a, c)
    r = midigen("export-model", "--checkpoint", "bach-gpt", "--out", tmp_path / "x", "--dtype", "int8")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_prepare_defaults_keep_parts_and_dynamics_and_flags_turn_them_off(tmp_path, bach_files):
    """The command line's defaults are the dataclass's: a config without the newer fields means
    "made before them" only in a file (which always carries its version), never on the command line."""
    from midigen.encoding import EncodingConfig, Tokenizer

    (tmp_path / "src").mkdir()
    for f in bach_files[:3]:
        shutil.copy(f, tmp_path / "src" / f.name)
    for flags, parts, bins in (((), True, 16), (("--no-parts", "--velocity-bins", "0"), False, 0)):
        out = tmp_path / f"p{len(flags)}"
        r = midigen("prepare", tmp_path / "src", "--out", out, "--workers", "0", *flags)
        assert r.returncode == 0, r.stderr
        cfg = Tokenizer.load(out / "tokenizer.json").config
        assert (cfg.parts, cfg.velocity_bins) == (parts, bins)
    assert EncodingConfig.from_dict({}) == EncodingConfig()
    assert not EncodingConfig.from_dict({"version": 1}).parts  # a file from before


@pytest.mark.parametrize("recipe", ["bach", "bach-sounding", "bach-gpu"])
def test_the_bundled_recipes_parse_into_valid_configs(recipe):
    """`train --recipe NAME`: the files in midigen/assets/recipes set known fields with valid values;
    the flags given override them."""
    args, cfg = cli.parse(["train", "--recipe", recipe, "--max-steps", "5"])
    assert cfg["train"].max_steps == 5 and cfg["train"].seq_len == 512
    GPTConfig.from_dict({"vocab_size": 413, **cfg["model"]})
    if recipe == "bach-sounding":  # a fine-tune of the bach recipe's run, adding the sounding embeddings
        assert cfg["train"].init_from == "runs/bach-gpt" and cfg["model"] == {"sounding": True}
