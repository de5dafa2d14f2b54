"""Where MIDI comes from: the files under given folders (`find_midi_files`), and the bundled
assets, the Bach chorales and the model trained on them, found from anywhere.

They ship inside the package (``midigen/assets/``, declared as package data in pyproject.toml),
so a wheel install carries them and no working directory is special::

    midigen/assets/bach/       409 Bach chorales as MIDI (music21's corpus, public domain)
    midigen/assets/bach-gpt/   the pretrained GPT: model.safetensors, config.json, tokenizer.json
    midigen/assets/recipes/    training recipes (``midigen train --recipe bach``): config files

>>> asset_path("bach").name, asset_path("bach-gpt").name
('bach', 'bach-gpt')

Where a path is expected, these names stand for the assets when no file or folder of that name
exists: ``midigen prepare bach ...``, ``midigen generate --checkpoint bach-gpt ...``,
``midigen.load_model("bach")``. This module only finds paths and imports nothing of midigen, so
every layer may use it (prepare uses `resolve_sources`, checkpoint.py `model_path`); loading a
bundled model is `midigen.checkpoint.load_model` / `pretrained`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
#: Bundled corpora of MIDI files, by name.
CORPORA = {"bach": "bach"}
#: Bundled checkpoints, by name (``"bach"`` is the model of the ``bach`` corpus).
MODELS = {"bach-gpt": "bach-gpt", "bach": "bach-gpt"}


def asset_path(name: str) -> Path:
    """The folder of a bundled asset: ``"bach"`` (the chorales) or ``"bach-gpt"`` (the model)."""
    folder = ASSETS / ({**MODELS, **CORPORA}.get(name, name))  # (a corpus's name names the corpus)
    if name not in CORPORA and name not in MODELS or not folder.is_dir():
        known = ", ".join(sorted({*CORPORA, *MODELS}))
        raise FileNotFoundError(f"{name!r}: no such bundled asset (bundled: {known}; looked in {ASSETS})")
    return folder


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A training recipe: a JSON file as given, else the bundled recipe of that name (``"bach"``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = ASSETS / "recipes" / f"{name_or_path}.json"
    if bundled.is_file():
        return bundled
    known = ", ".join(sorted(f.stem for f in (ASSETS / "recipes").glob("*.json")))
    raise FileNotFoundError(f"--recipe {name_or_path}: no such file or bundled recipe (bundled: {known})")


def model_path(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint's folder: the path itself where it exists, else the bundled model of that name."""
    p = Path(name_or_path)
    if not p.exists() and str(name_or_path) in MODELS:
        return ASSETS / MODELS[str(name_or_path)]
    return p


def resolve_sources(paths: Iterable[str | os.PathLike]) -> list[str]:
    """MIDI files and folders as given, a bundled corpus's name (``"bach"``) as its folder.

    Raises FileNotFoundError naming every path that is neither a file, a folder nor a bundled corpus.
    """
    out, missing = [], []
    for p in map(str, paths):
        if os.path.exists(p):
            out.append(p)
        elif p in CORPORA:
            out.append(str(ASSETS / CORPORA[p]))
        else:
            missing.append(p)
    if missing:  # (a typo in a folder name would otherwise pass unnoticed, or make an empty corpus)
        raise FileNotFoundError("no such file or folder: " + ", ".join(missing))
    return out


MIDI_SUFFIXES = (".mid", ".midi")


def find_midi_files(paths: Iterable[str | os.PathLike], as_str: bool = False) -> list:
    """Every ``.mid``/``.midi`` file under the given files and folders, sorted, recursively.

    ``as_str=True`` returns plain strings (a fifth of the memory of `Path` objects: at Lakh
    scale, 176k paths).
    """
    out = set()
    for p in map(str, paths):
        if os.path.isdir(p):
            todo = [p]
            while todo:  # os.scandir: file types come with the listing, no stat() per file
                try:
                    with os.scandir(todo.pop()) as entries:
                        for e in entries:
                            if e.is_dir(follow_symlinks=False):  # (as os.walk: no symlink loops)
                                todo.append(e.path)
                            elif e.name.lower().endswith(MIDI_SUFFIXES) and e.is_file():
                                out.add(e.path)
                except OSError:  # an unreadable folder is skipped, as os.walk does
                    continue
        else:
            out.add(os.path.normpath(p))  # a file named explicitly is checked whatever its suffix
    return sorted(out) if as_str else [Path(f) for f in sorted(out)]
