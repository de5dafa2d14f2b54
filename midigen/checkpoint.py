"""Checkpoints: safetensors for tensors, JSON for everything else. Nothing is ever unpickled.

A checkpoint is a folder::

    model.safetensors      the weights
    optimizer.safetensors  optimizer moments (training checkpoints only)
    config.json            model name and config, encoding config, training config
    tokenizer.json         the `Tokenizer`: encoding config, vocabulary, BPE merges if any
    trainer_state.json     step, data position, best validation loss, RNG states (training only)
    checksums.json         sha256 of every file above, checked on load

It is written to a temporary folder and renamed into place, so a crash mid-write leaves the
previous checkpoint intact. A truncated or edited file fails to load with an error that names it.
Checkpoints of the layout before `Tokenizer` (``vocab.json``, plus a ``midigen.bpe``
``tokenizer.json`` for BPE) still load.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .assets import ASSETS, MODELS, model_path
from .encoding import Tokenizer
from .errors import CheckpointError, VocabError

if TYPE_CHECKING:
    from .model import GPT, Memory

CHECKPOINT_FORMAT = "midigen.checkpoint"
CHECKPOINT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state() -> dict:
    """Torch RNG states as JSON-able strings (dropout and sampling depend on them)."""
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    decode = lambda s: torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)  # noqa: E731
    torch.set_rng_state(decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])


def _optimizer_tensors(opt: torch.optim.Optimizer):
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, tokenizer: Tokenizer, config: dict,
                    optimizer: torch.optim.Optimizer | None = None, trainer_state: dict | None = None,
                    extra_tensors: dict | None = None) -> Path:
    """Write a checkpoint folder atomically. ``config`` holds the model name and configs;
    ``extra_tensors`` (e.g. a memory model's memories mid-run) go to ``state.safetensors``."""
    from safetensors.torch import save_file, save_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    raw = model.module if hasattr(model, "module") else model  # unwrap DDP
    raw = getattr(raw, "_orig_mod", raw)  # unwrap torch.compile
    save_model(raw, str(tmp / "model.safetensors"))  # handles tied weights
    files = ["model.safetensors", "config.json", "tokenizer.json"]
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **config}
    (tmp / "config.json").write_text(json.dumps(meta, indent=1))
    tokenizer.save(tmp / "tokenizer.json")
    if optimizer is not None:
        tensors, opt_meta = _optimizer_tensors(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        trainer_state = {**(trainer_state or {}), "optimizer": opt_meta}
        files.append("optimizer.safetensors")
    if extra_tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra_tensors.items()}, str(tmp / "state.safetensors"))
        files.append("state.safetensors")
    if trainer_state is not None:
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
        files.append("trainer_state.json")
    (tmp / "checksums.json").write_text(json.dumps({f: _sha256(tmp / f) for f in files}, indent=1))
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)
    return path


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint folder from a run folder (its ``best``, else ``latest``), the folder itself,
    or the name of a bundled model (``"bach-gpt"``, alias ``"bach"``: `midigen.assets`)."""
    p = model_path(path)
    if (p / "config.json").is_file():
        return p
    for name in ("best", "latest"):
        if (p / name / "config.json").is_file():
            return p / name
    # a crash between the two renames of save_checkpoint leaves only the old copy
    olds = sorted(p.glob(".latest.old-*"))
    if olds and (olds[-1] / "config.json").is_file():
        return olds[-1]
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint or run folder (bundled models: {', '.join(MODELS)})")
    raise CheckpointError(f"{p}: no checkpoint here (expected config.json, or best/ or latest/ inside a run folder)")


def read_checkpoint(path: str | os.PathLike, verify: bool = True) -> tuple[Path, dict, Tokenizer]:
    """Check a checkpoint folder's files; returns (folder, config, tokenizer)."""
    p = resolve(path)
    sums_path = p / "checksums.json"
    if not sums_path.is_file():
        raise CheckpointError(f"{p}: incomplete checkpoint (checksums.json missing)")
    sums = json.loads(sums_path.read_text())
    for name, digest in sums.items():
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from the checkpoint")
        if verify and _sha256(f) != digest:
            raise CheckpointError(f"{f}: checksum mismatch: the file is truncated or was modified")
    try:
        meta = json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p / 'config.json'}: not valid JSON ({exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: not a midigen checkpoint of version {CHECKPOINT_VERSION}")
    try:
        tokenizer = Tokenizer.load(p)  # (the old layout: vocab.json, maybe a BPE tokenizer.json)
    except VocabError as exc:
        raise CheckpointError(str(exc)) from None
    if (p / "vocab.json").is_file() and tokenizer.has_merges:  # old layout: the pair must agree
        base = Tokenizer.load(p / "vocab.json")
        if base != tokenizer.without_merges():
            raise CheckpointError(f"{p}: tokenizer.json was made for another vocabulary than vocab.json")
    return p, meta, tokenizer


def upgrade_checkpoint(path: str | os.PathLike) -> Path:
    """Rewrite a checkpoint of the old layout (``vocab.json``, maybe a ``midigen.bpe``
    ``tokenizer.json``) in place into the current one (one ``tokenizer.json``); the weights and
    config are untouched. Every file is checked first; returns the folder."""
    from . import atomic

    p, _, tokenizer = read_checkpoint(path)
    if not (p / "vocab.json").is_file():
        return p  # already current
    tokenizer.save(p / "tokenizer.json")
    sums = {k: v for k, v in json.loads((p / "checksums.json").read_text()).items() if k != "vocab.json"}
    sums["tokenizer.json"] = _sha256(p / "tokenizer.json")
    atomic.write_json(p / "checksums.json", sums)
    (p / "vocab.json").unlink()
    return p


def build_model(name: str, model_config: dict) -> GPT:
    from .model import build_model as build

    try:
        return build(name, model_config)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load a checkpoint for inference: ``(model, tokenizer, meta)``, the model in eval mode.

    ``path``: a checkpoint or run folder, or a bundled model's name (``load_model("bach")``).

    ``tokenizer`` is the `Tokenizer` that gives the model's ids their meaning.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model as st_load_model

    p, meta, tokenizer = read_checkpoint(path)
    model = build_model(meta["model"], meta["model_config"])
    if model.config.vocab_size != len(tokenizer):
        raise CheckpointError(f"{p}: the model has {model.config.vocab_size} token ids but its tokenizer has "
                              f"{len(tokenizer)}")
    try:  # (weights stored in 16 bits, `export_model`, are read into the float32 model)
        st_load_model(model, str(p / "model.safetensors"), device=str(device))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{p / 'model.safetensors'}: cannot load weights ({exc})") from None
    return model.to(device).eval(), tokenizer, meta


def init_weights_from(model: torch.nn.Module, path: str | os.PathLike, tokenizer: Tokenizer) -> list[str]:
    """Copy a checkpoint's weights into ``model`` (to fine-tune it; Hugging Face's ``from_pretrained``
    with missing keys). The checkpoint must share ``tokenizer``'s vocabulary and every weight it has
    must fit ``model``; parameters it lacks keep their initialisation. Returns their names."""
    from safetensors.torch import load_file

    p, _meta, ck_tokenizer = read_checkpoint(path)
    if ck_tokenizer != tokenizer:
        raise CheckpointError(f"{p}: its tokenizer ({len(ck_tokenizer)} tokens) is not the corpus's "
                              f"({len(tokenizer)} tokens): fine-tune on a corpus prepared with the same encoding")
    weights = load_file(str(p / "model.safetensors"))
    own = model.state_dict()
    for a, b in (("wte.weight", "head.weight"), ("head.weight", "wte.weight")):  # (tied: saved once)
        if model.config.tie_weights and a in weights and b not in weights:
            weights[b] = weights[a]
    extra = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(weights) & set(own) if weights[k].shape != own[k].shape)
    if extra or wrong:
        raise CheckpointError(f"{p}: its weights do not fit this model (not in the model: {extra or 'none'}; "
                              f"other shapes: {wrong or 'none'}): give the model the checkpoint's sizes")
    missing = sorted(set(own) - set(weights))
    with torch.no_grad():
        for k, v in weights.items():
            own[k].copy_(v.to(own[k].dtype))
    return missing


def pretrained(name: str = "bach", device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load a bundled model by name (``"bach-gpt"``, alias ``"bach"``): ``(model, tokenizer, meta)``
    as `load_model`, which also takes the names (a file or folder of that name, if any, wins)."""
    if name not in MODELS:
        raise FileNotFoundError(f"{name!r}: no such bundled model (bundled: {', '.join(sorted(MODELS))})")
    return load_model(ASSETS / MODELS[name], device=device)


def export_model(path: str | os.PathLike, out: str | os.PathLike, dtype: str = "float16") -> Path:
    """An inference copy of a checkpoint (or a run folder's best): the weights in ``dtype``
    (``float16``, ``bfloat16`` or ``float32``), config and tokenizer; no optimizer state. Half the
    bytes of float32 at 16 bits; `load_model` reads it back into a float32 model. Returns ``out``."""
    types = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in types:
        raise ValueError(f"dtype must be one of {', '.join(types)}, got {dtype!r}")
    model, tokenizer, meta = load_model(path)
    config = {k: v for k, v in meta.items() if k not in ("format", "version")}
    config["weights_dtype"] = dtype
    return save_checkpoint(out, model.to(types[dtype]), tokenizer, config)


def load_training_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        memory: Memory | None = None) -> dict:
    """Restore model, optimizer (and a memory model's memories) in place; returns trainer_state."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors.torch import load_model as st_load_model

    p, meta, _ = read_checkpoint(path)
    raw = model.module if hasattr(model, "module") else model
    raw = getattr(raw, "_orig_mod", raw)
    device = next(raw.parameters()).device
    try:
        st_load_model(raw, str(p / "model.safetensors"), device=str(device))
        tensors = load_file(str(p / "optimizer.safetensors"), device=str(device))
    except (SafetensorError, RuntimeError, OSError, FileNotFoundError) as exc:
        raise CheckpointError(f"{p}: cannot restore training state ({exc})") from None
    state = json.loads((p / "trainer_state.json").read_text())
    _load_optimizer(optimizer, tensors, state.pop("optimizer"))
    if memory is not None and (p / "state.safetensors").is_file():
        memory.load_tensors(load_file(str(p / "state.safetensors"), device=str(device)))
    return state
