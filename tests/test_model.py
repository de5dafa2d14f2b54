"""The GPT: shapes, causality, KV cache, padding, musical embeddings."""

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
