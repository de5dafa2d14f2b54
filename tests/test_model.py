"""The GPT: shapes, causality, KV cache, padding, musical embeddings."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from midigen.model import GPT, GPTConfig, KVCache


def tiny(**kw):
    torch.manual_seed(0)
    cfg = GPTConfig(**{**dict(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32), **kw})
    return GPT(cfg).eval(), cfg


def batch(B=2, T=20, V=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(3, V, (B, T), generator=g)
    steps = torch.cumsum(torch.randint(0, 3, (B, T), generator=g), 1)
    return idx, steps


@pytest.mark.parametrize("position", ["learned", "rotary"])
@pytest.mark.parametrize("musical", [True, False])
def test_shapes_and_loss(position, musical):
    model, cfg = tiny(position=position, musical=musical)
    idx, steps = batch()
    logits, loss = model(idx, steps, targets=idx)
    assert logits.shape == (2, 20, cfg.vocab_size)
    assert loss.ndim == 0 and 2.0 < loss.item() < 6.0  # near ln(40) = 3.7 at init
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_causal_masking(position):
    model, _ = tiny(position=position)
    idx, steps = batch()
    a, _ = model(idx, steps)
    idx2 = idx.clone()
    idx2[:, 12] = (idx2[:, 12] + 1) % 40
    b, _ = model(idx2, steps)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-4)


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_kv_cache_equals_full_recompute(position):
    model, cfg = tiny(position=position)
    idx, steps = batch(T=24)
    full, _ = model(idx, steps)
    cache = KVCache(cfg, 2)
    parts = [model(idx[:, :9], steps[:, :9], cache=cache)[0], model(idx[:, 9:13], steps[:, 9:13], cache=cache)[0]]
    for t in range(13, 24):
        parts.append(model(idx[:, t : t + 1], steps[:, t : t + 1], cache=cache)[0])
    assert cache.pos == 24
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_padding_is_ignored_by_the_loss():
    model, _ = tiny()
    idx, steps = batch(B=1, T=20)
    y = torch.roll(idx, -1, 1)
    y[:, 12:] = -100  # padding after 12 real targets
    _, loss = model(idx, steps, y)
    _, loss_short = model(idx[:, :12], steps[:, :12], y[:, :12])
    assert torch.allclose(loss, loss_short, atol=1e-6)
    idx2 = idx.clone()
    idx2[:, 13:] = 0  # what stands on padded positions does not matter
    _, loss2 = model(idx2, steps, y)
    assert torch.allclose(loss, loss2, atol=1e-6)


def test_musical_embeddings_see_the_time_steps():
    model, _ = tiny(musical=True)
    idx, steps = batch()
    a, _ = model(idx, steps)
    b, _ = model(idx, steps + 4)  # same tokens, a beat later
    assert not torch.allclose(a, b, atol=1e-4)
    plain, _ = tiny(musical=False)
    assert torch.allclose(plain(idx, steps)[0], plain(idx, steps + 4)[0])
    with pytest.raises(ValueError, match="time steps"):
        model(idx)


def test_config_checks_and_weight_tying():
    with pytest.raises(ValueError):
        GPTConfig(n_embd=30, n_head=4)
    model, cfg = tiny()
    assert model.head.weight is model.wte.weight
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="longer than block_size"):
        model(*batch(T=40))


# ---- the same logits as before GPT and MemoryGPT were merged into one class
# tests/data/model_reference.safetensors was written by the code at commit 8e13a1e (before the
# merge): the weights of two tiny GPTs (learned / rotary positions, torch.manual_seed(0)), an input,
# their logits, loss and KV-cached logits; the logits of the first bundled bach-gpt (no longer
# checked: it was replaced); and an XL + kNN MemoryGPT's weights, config and logits over three segments with memory.
REFERENCE = Path(__file__).parent / "data" / "model_reference.safetensors"


def reference():
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(REFERENCE), "pt") as f:
        configs = json.loads(f.metadata()["configs"])
    return load_file(str(REFERENCE)), configs


def part(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def cached_logits(model, idx, steps, split, sounding=None):
    """KV-cached logits: the first ``split`` tokens in one pass, then one token at a time."""
    kw = (lambda a, b: {}) if sounding is None else (lambda a, b: {"sounding": sounding[:, a:b]})
    cache = KVCache(model.config, idx.shape[0])
    parts = [model(idx[:, :split], steps[:, :split], cache=cache, **kw(0, split))[0]]
    for t in range(split, idx.shape[1]):
        parts.append(model(idx[:, t : t + 1], steps[:, t : t + 1], cache=cache, **kw(t, t + 1))[0])
    return torch.cat(parts, 1)


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_plain_gpt_gives_the_logits_of_before_the_merge(position):
    ref, configs = reference()
    cfg = GPTConfig.from_dict(configs[position])
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    weights = part(ref, f"{position}.weights.")
    assert set(model.state_dict()) == set(weights)  # same parameter names
    for name, t in model.state_dict().items():  # same initialisation from the same seed
        assert torch.equal(t, weights[name]), name
    model.load_state_dict(weights, strict=True)
    idx, steps = ref[f"{position}.idx"], ref[f"{position}.steps"]
    with torch.no_grad():
        logits, loss = model(idx, steps, targets=torch.roll(idx, -1, 1))
        assert torch.allclose(logits, ref[f"{position}.logits"], rtol=0, atol=1e-6)
        assert torch.allclose(loss, ref[f"{position}.loss"][0], rtol=0, atol=1e-6)
        assert torch.allclose(cached_logits(model, idx, steps, 9), ref[f"{position}.cached_logits"], rtol=0, atol=1e-6)
    assert model.new_memory(2) is None and not cfg.has_memory


def test_bach_checkpoint_loads_and_its_cached_logits_are_its_full_ones(bach_files):
    """The bundled model (weights stored in float16) in float32, on a real chorale: KV-cached
    decoding gives the logits of the full forward pass. (Until 2026-11-30 this compared the first
    bundled model with logits written before the merge; its successor has other weights.)"""
    from midigen.checkpoint import load_model
    from midigen.encoding.sounding import sounding

    model, tok, meta = load_model("bach-gpt")
    assert meta["model"] == "gpt" and not model.config.has_memory and next(model.parameters()).dtype == torch.float32
    assert model.config.sounding  # (it embeds what is sounding: tests/test_sounding.py)
    t = tok.encode(bach_files[0])
    idx = torch.as_tensor(t.ids[:96].astype(np.int64))[None]
    steps = torch.as_tensor(t.steps[:96].astype(np.int64))[None]
    state = torch.as_tensor(sounding(t.ids[:96], t.steps[:96], tok))[None]
    with torch.no_grad():
        full = model(idx, steps, sounding=state)[0]
        assert torch.allclose(cached_logits(model, idx, steps, 24, state), full, rtol=0, atol=1e-4)
    assert full[0, :-1].argmax(-1).eq(idx[0, 1:]).float().mean() > 0.3  # it knows chorales


def test_a_memory_model_of_before_the_merge_loads_and_gives_its_logits():
    from midigen.model import build_model

    ref, configs = reference()
    model = build_model("xl+knn", configs["memory"]).eval()  # the old MemoryConfig's dict, as saved
    assert model.config.has_memory and model.config.position == "rotary"
    model.load_state_dict(part(ref, "memory.weights."), strict=True)  # same parameter names
    idx, steps = ref["memory.idx"], ref["memory.steps"]
    mem = model.new_memory(2)
    with torch.no_grad():
        out = torch.cat([model(idx[:, s * 16 : s * 16 + 16], steps[:, s * 16 : s * 16 + 16], memory=mem)[0] for s in range(3)], 1)
    assert torch.allclose(out, ref["memory.logits"], rtol=0, atol=1e-5)


def test_named_presets_and_their_checks():
    from midigen.model import build_model

    assert GPTConfig.for_model("gpt", vocab_size=40) == GPTConfig(vocab_size=40)
    xl = GPTConfig.for_model("xl", block_size=32)
    assert (xl.position, xl.xl_memory, xl.knn_layers) == ("rotary", 32, ())
    both = GPTConfig.for_model("xl+knn", n_layer=3)
    assert both.xl_memory == both.block_size and both.knn_layers == (2,)
    assert GPTConfig.from_dict(both.to_dict()) == both  # knn_layers survives JSON (a list) as a tuple
    with pytest.raises(ValueError, match="rotary"):
        GPTConfig(xl_memory=16)  # memory needs relative (rotary) positions
    with pytest.raises(ValueError, match="outside"):
        GPTConfig(position="rotary", knn_layers=(4,), n_layer=4)
    with pytest.raises(ValueError, match="does not match"):
        build_model("gpt", dict(position="rotary", xl_memory=16))
    with pytest.raises(ValueError, match="does not match"):
        build_model("knn", dict(knn_layers=()))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer", {})
    with pytest.raises(ValueError, match="unknown GPTConfig key"):
        build_model("gpt", dict(n_layers=3))


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_attention_maps_are_the_weights_the_model_attends_with(position):
    from midigen.model import attention_maps

    model, cfg = tiny(position=position)
    idx, steps = batch(T=12)
    B, T, C, H = 2, 12, cfg.n_embd, cfg.n_head
    got = {}  # each layer's input to its attention and output of it, by forward hooks
    hooks = [b.attn.register_forward_hook(lambda m, a, out, i=i: got.__setitem__(i, (a[0], out[0])))
             for i, b in enumerate(model.blocks)]
    model.train()
    maps = attention_maps(model, idx, steps)
    assert model.training  # the mode is put back
    for h in hooks:
        h.remove()
    assert maps.shape == (B, cfg.n_layer, H, T, T)
    assert torch.allclose(maps.sum(-1), torch.ones(B, cfg.n_layer, H, T))
    assert torch.all(maps.triu(1) == 0)  # nothing above the causal diagonal
    for i, block in enumerate(model.blocks):  # the weights times the values give the layer's output
        x, out = got[i]
        v = block.attn.qkv(x).split(C, dim=2)[2].view(B, T, H, C // H).transpose(1, 2)
        y = block.attn.proj((maps[:, i] @ v).transpose(1, 2).reshape(B, T, C))
        assert torch.allclose(y, out, atol=1e-5)
    # with a cache: the new tokens' rows over all cached keys
    cache = KVCache(cfg, B)
    model(idx[:, :8], steps[:, :8], cache=cache)
    tail = attention_maps(model, idx[:, 8:], steps[:, 8:], cache=cache)
    assert torch.allclose(tail, maps[..., 8:, :], atol=1e-5)
