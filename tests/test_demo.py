"""The one-command demo's pieces, end to end (its timing is not a test matter), and the bundled model."""

import json
import shutil

import pytest

from conftest import BUNDLED_MODEL, ROOT
from midigen.checkpoint import load_model
from midigen.data.prepare import prepare
from midigen.train import TrainConfig, Trainer

BUNDLED = BUNDLED_MODEL


def test_demo_writes_midi_wav_png_and_prints_the_table(tmp_path, bach_files, capsys):
    from midigen.demo import run_demo

    src = tmp_path / "bach"
    src.mkdir()
    for f in bach_files[:40]:
        shutil.copy(f, src / f.name)
    prep = tmp_path / "prep"
    prepare([src], prep, workers=0, progress=False)
    cfg = TrainConfig(data=str(prep), out=str(tmp_path / "run"), batch_size=4, seq_len=64, max_steps=3, eval_interval=3,
                      eval_batches=2, warmup_steps=1, progress=False, device="cpu")
    Trainer(cfg, dict(n_layer=1, n_head=2, n_embd=32)).train()
    # an older demo's corpus (another encoding) where the demo prepares: kept, another folder used
    from midigen.encoding import EncodingConfig, Tokenizer

    old = tmp_path / "old"
    prepare([src], old, EncodingConfig(parts=False, velocity_bins=0), workers=0, progress=False)
    result = run_demo(tmp_path / "out", data=src, prepared=old, checkpoint=tmp_path / "run", samples=2)
    assert Tokenizer.load(old / "tokenizer.json").config.parts is False  # untouched
    assert (tmp_path / f"old-{Tokenizer().hash[:8]}" / "manifest.json").is_file()
    for name in ("demo.mid", "demo.wav", "demo.png", "demo_eval.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    text = capsys.readouterr().out
    assert "split: loss" in text and "pitch_class_entropy" in text
    assert json.loads((tmp_path / "out" / "demo_eval.json").read_text())["likelihood"]["tokens"] > 0
    assert result["samples"] >= 1


@pytest.mark.skipif(not (BUNDLED / "model.safetensors").exists(), reason="no bundled checkpoint yet")
def test_bundled_checkpoint_loads_and_generates():
    from midigen.generate import generate

    model, tok, meta = load_model(BUNDLED)
    assert (BUNDLED / "model.safetensors").stat().st_size < 25 * 2**20
    (toks,) = generate(model, tok, max_new_tokens=40, seed=0)
    tok.decode(toks.ids, strict=True)


@pytest.mark.skipif(not (BUNDLED / "model.safetensors").exists(), reason="no bundled checkpoint yet")
def test_cli_evaluate_with_the_bundled_model(tmp_path, bach_files):
    import subprocess
    import sys

    src = tmp_path / "bach"
    src.mkdir()
    for f in bach_files[:60]:
        shutil.copy(f, src / f.name)
    prep = tmp_path / "prep"
    prepare([src], prep, workers=0, progress=False, valid_fraction=0.1, test_fraction=0.2)
    out = tmp_path / "eval.json"
    r = subprocess.run([sys.executable, "-m", "midigen", "evaluate", "--checkpoint", str(BUNDLED), "--data", str(prep),
                        "--split", "test", "--samples", "2", "--max-tokens", "120", "--json", str(out), "-q"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "bits/note" in r.stdout and "scale_consistency" in r.stdout
    result = json.loads(out.read_text())
    assert 0 < result["likelihood"]["loss"] < 3  # the trained model, far below ln(365) = 5.9
    assert set(result["statistics"]) >= {"pitch_range", "polyphony", "duration_hist", "ioi_hist"}
    r = subprocess.run([sys.executable, "-m", "midigen", "evaluate", "--checkpoint", str(tmp_path / "nope"), "--data", str(prep)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 2 and "no such checkpoint" in r.stderr


def test_bundled_assets_load_from_any_working_directory(tmp_path):
    import subprocess
    import sys

    code = (
        "import midigen\n"
        "from midigen.check import check\n"
        "model, tok, meta = midigen.load_model('bach')\n"
        "same, _, _ = midigen.pretrained('bach')\n"
        "assert model.num_params() == same.num_params() > 1e6\n"
        "report = check(['bach'], tok.config, progress=False)\n"
        "assert report['ok'] == 409, report['ok']\n"
        "print(midigen.asset_path('bach'), len(tok))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == str(ROOT / "midigen" / "assets" / "bach")
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_unknown_bundled_names_say_what_is_bundled():
    from midigen.assets import asset_path
    from midigen.checkpoint import pretrained

    with pytest.raises(FileNotFoundError, match="bach-gpt"):
        asset_path("mozart")
    with pytest.raises(FileNotFoundError, match="bundled: bach, bach-gpt"):
        pretrained("mozart")
