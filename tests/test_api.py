"""The public API: `import midigen` is cheap, every name of `midigen.__all__` resolves, and the
README's Python code runs as written."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

HEAVY = ("torch", "matplotlib", "music21", "tqdm")


def _python(code: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env)


def test_import_midigen_loads_no_heavy_library():
    """`import midigen` (and `midigen.prepare`, which prepare's workers need) load no torch,
    matplotlib, music21 or tqdm: the names are imported on first use."""
    code = (
        "import sys, midigen\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "midigen.prepare, midigen.PrepareConfig, midigen.Score, midigen.Tokenizer, midigen.MidiError\n"
        "print(sorted(m for m in ('torch',) if m in sys.modules))\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "[]"], r.stdout


def test_every_public_name_resolves():
    code = (
        "import midigen, midigen.data\n"
        "for pkg in (midigen, midigen.data):\n"
        "    assert sorted(pkg.__all__) == sorted(pkg._LAZY), pkg\n"
        "    missing = [n for n in pkg.__all__ if getattr(pkg, n, None) is None]\n"
        "    assert not missing, missing\n"
        "    assert set(pkg.__all__) <= set(dir(pkg))\n"
        "print(len(midigen.__all__))\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 35


def test_the_pipeline_names_are_at_the_top_level():
    import midigen

    wanted = {"read_midi", "write_midi", "Score", "Tokenizer", "Tokens", "EncodingConfig", "encode", "decode",
              "prepare", "PrepareConfig", "PreparedCorpus", "make_batches", "GPT", "GPTConfig", "Trainer",
              "TrainConfig", "load_model", "pretrained", "generate", "SamplingConfig", "evaluate", "play",
              "piano_roll", "render", "show_score", "instrument_name", "MidiError", "VocabError", "DecodeError",
              "CheckpointError", "TrainingError", "PlaybackError"}
    assert wanted <= set(midigen.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        midigen.nonsense  # noqa: B018


def test_functions_named_like_their_modules_stay_functions():
    """`midigen.generate` / `midigen.evaluate` are the functions, also after their modules load
    (Python binds an imported submodule as an attribute of its package)."""
    code = (
        "import types, midigen\n"
        "import midigen.generate\n"
        "from midigen.evaluate import EvaluateConfig\n"
        "from midigen.data.prepare import PrepareConfig\n"
        "import midigen.data\n"
        "for f in (midigen.generate, midigen.evaluate, midigen.data.prepare):\n"
        "    assert isinstance(f, types.FunctionType), f\n"
        "import sys\n"
        "assert isinstance(sys.modules['midigen.generate'], types.ModuleType)\n"
        "assert midigen.playback.__name__ == 'midigen.playback'  # submodules load on first use\n"
        "print('ok')\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def readme_python() -> str:
    """The README's ```python blocks, in order, as one script (they build on each other)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 2, "the README has lost its Python examples"
    # Lines that need an interactive session (IPython magics) are the only ones left out: in a
    # script, play() and show_score() return their player / drawing like anywhere else.
    lines = [line for block in blocks for line in block.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines) + "\n"


def test_readme_python_code_runs(tmp_path):
    """The README's Python API and listening examples, run for real from an empty folder."""
    script = readme_python()
    assert "midigen.generate(" in script and "midigen.play(" in script and "midigen.load_model(" in script
    r = _python(script + "print('README OK')\n", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, f"the README's Python code fails:\n{r.stderr[-3000:]}"
    assert r.stdout.strip().endswith("README OK")
    for made in ("same.mid", "song.ogg", "song.svg"):  # what the examples write
        assert (tmp_path / made).stat().st_size > 0, made
