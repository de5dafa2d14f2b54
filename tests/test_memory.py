"""Transformer-XL and kNN memory: exactness, detachment, resets, retrieval, bounds, checkpoints."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from midigen.model import GPT, GPTConfig, Memory


def model(**kw):
    torch.manual_seed(0)
    base = dict(vocab_size=60, block_size=16, n_layer=1, n_head=2, n_embd=32, position="rotary")
    return GPT(GPTConfig(**{**base, **kw})).eval()


def data(B=2, T=32, seed=0, lo=3, hi=60):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, (B, T), generator=g), torch.cumsum(torch.randint(0, 3, (B, T), generator=g), 1)


def test_xl_second_segment_equals_a_plain_pass_over_both():
    m = model(xl_memory=16)
    idx, steps = data()
    full, _ = m(idx, steps)  # no memory: one pass over both segments
    mem = m.new_memory(2)
    first, _ = m(idx[:, :16], steps[:, :16], memory=mem)
    second, _ = m(idx[:, 16:], steps[:, 16:], memory=mem)
    assert torch.allclose(first, full[:, :16], atol=1e-5)
    assert torch.allclose(second, full[:, 16:], atol=1e-5)


def test_memory_is_detached():
    m = model(xl_memory=16, tie_weights=False).train()
    seg1 = torch.randint(3, 30, (2, 16))  # tokens 3..29 in the first segment
    seg2 = torch.randint(30, 60, (2, 16))  # tokens 30..59 in the second
    steps = torch.arange(16).repeat(2, 1)
    mem = m.new_memory(2)
    m(seg1, steps, memory=mem)
    assert not mem.xl[0]["k"].requires_grad
    m.zero_grad()
    _, loss = m(seg2, steps + 16, targets=seg2, memory=mem)
    loss.backward()
    grad = m.wte.weight.grad
    assert grad[3:30].abs().sum() == 0  # nothing flows back into the first segment's tokens
    assert grad[30:60].abs().sum() > 0


@pytest.mark.parametrize("kind", ["xl", "knn", "xl+knn"])
def test_reset_clears_exactly_that_row_and_rows_never_mix(kind):
    kw = {"xl_memory": 16} if "xl" in kind else {}
    if "knn" in kind:
        kw.update(knn_layers=(0,), knn_capacity=64, knn_topk=8)
    m = model(**kw)
    idx, steps = data(B=3, T=32)
    mem = m.new_memory(3)
    m(idx[:, :16], steps[:, :16], memory=mem)
    out, _ = m(idx[:, 16:], steps[:, 16:], memory=mem, reset=torch.tensor([True, False, False]))
    fresh, _ = m(idx[:1, 16:], steps[:1, 16:], memory=m.new_memory(1))  # a brand-new piece
    assert torch.allclose(out[0], fresh[0], atol=1e-5)
    # row 1 alone, with its own history, gives the same as inside the batch
    mem1 = m.new_memory(1)
    m(idx[1:2, :16], steps[1:2, :16], memory=mem1)
    alone, _ = m(idx[1:2, 16:], steps[1:2, 16:], memory=mem1)
    assert torch.allclose(out[1], alone[0], atol=1e-5)
    assert not torch.allclose(out[1], m(idx[1:2, 16:], steps[1:2, 16:], memory=m.new_memory(1))[0][0], atol=1e-4)


def test_knn_retrieval_is_the_true_top_k():
    m = model(knn_layers=(0,), knn_capacity=200, knn_topk=10)
    attn = m.blocks[0].attn
    mem = m.new_memory(2)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # 5 segments of 32 random keys (160 of 200 slots)
        k = torch.randn(2, 2, 32, 16, generator=g)
        mem.write(0, k, torch.randn(2, 2, 32, 16, generator=g), torch.ones(2, 32, dtype=torch.bool))
    q = torch.randn(2, 2, 7, 16, generator=g)
    scores, idx = attn.retrieve(q, mem.knn[0])
    keys = mem.knn[0]["k"].numpy()  # (B, H, C, hs), normalised
    valid = mem.knn[0]["valid"].numpy()
    qn = (q / q.norm(dim=-1, keepdim=True)).numpy()
    for b in range(2):
        for h in range(2):
            for t in range(7):
                sims = np.array([qn[b, h, t] @ keys[b, h, c] if valid[b, c] else -1e4 for c in range(200)])
                best = np.argsort(-sims)[:10]
                assert set(best.tolist()) == set(idx[b, h, t].tolist())
                assert np.allclose(np.sort(sims[best]), np.sort(scores[b, h, t].numpy()), atol=1e-5)


def test_full_memory_drops_the_oldest_and_odd_capacities_keep_the_right_entries():
    cfg = GPTConfig(vocab_size=60, block_size=16, n_layer=1, n_head=1, n_embd=8, position="rotary", knn_layers=(0,),
                    knn_capacity=50, knn_topk=4)
    mem = Memory(cfg, 1)
    written = []
    for s in range(4):  # 64 tokens into 50 slots: 50 is no multiple of 16
        k = torch.arange(16, dtype=torch.float32).add(100 * s)[None, None, :, None].repeat(1, 1, 1, 8)
        k[..., 1] = s + 1  # make every key unique after normalisation
        mem.write(0, k, k.clone(), torch.ones(1, 16, dtype=torch.bool))
        written.append(k[0, 0])
    m = mem.knn[0]
    assert int(m["valid"].sum()) == 50  # full, not wiped
    allk = torch.cat(written)  # (64, 8) in write order
    newest50 = F.normalize(allk[-50:], dim=-1)
    ring_order = (m["ptr"].item() + torch.arange(50)) % 50  # oldest .. newest
    assert torch.allclose(m["k"][0, 0, ring_order], newest50, atol=1e-6)
    assert torch.allclose(m["v"][0, 0, ring_order], allk[-50:])


def test_memory_stays_bounded_over_hundreds_of_segments():
    m = model(xl_memory=16, knn_layers=(0,), knn_capacity=100, knn_topk=8)
    mem = m.new_memory(2)
    shapes = {k: v.shape for k, v in mem.tensors().items()}
    idx, steps = data(B=2, T=16)
    with torch.no_grad():
        for s in range(300):
            m(idx, steps + 16 * s, memory=mem, reset=torch.tensor([s % 97 == 0, False]))
    assert {k: v.shape for k, v in mem.tensors().items()} == shapes
    assert int(mem.knn[0]["valid"][1].sum()) == 100


def test_generation_keeps_writing_to_memory():
    from midigen import Tokenizer, decode
    from midigen.generate import generate

    tok = Tokenizer()
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=len(tok), block_size=32, n_layer=2, n_head=2, n_embd=32, position="rotary",
                      xl_memory=32, knn_layers=(1,), knn_capacity=256, knn_topk=8)).eval()
    calls = []
    orig = m.write_segment
    m.write_segment = lambda memory, cache: (calls.append(int(memory.knn[1]["valid"].sum())), orig(memory, cache))
    (toks,) = generate(m, tok, max_new_tokens=150, seed=0, min_length=150)
    decode(toks.ids, tok, strict=True)
    assert len(calls) >= 4 and calls == sorted(calls) and calls[-1] > 0  # the memory grows segment by segment


@pytest.mark.parametrize("kind", ["xl", "knn", "xl+knn"])
def test_each_variant_trains_saves_loads_and_generates(kind, tmp_path, bach_files):
    from midigen.checkpoint import load_model
    from midigen.data.prepare import prepare
    from midigen.generate import generate
    from midigen.train import TrainConfig, Trainer

    src = tmp_path / "src"
    src.mkdir()
    for f in bach_files[:20]:
        shutil.copy(f, src / f.name)
    prepare([src], tmp_path / "prep", workers=0, progress=False, valid_fraction=0.2, test_fraction=0.1)
    cfg = TrainConfig(data=str(tmp_path / "prep"), out=str(tmp_path / "run"), model=kind, batch_size=2, seq_len=32,
                      max_steps=4, eval_interval=2, eval_batches=2, warmup_steps=1, progress=False, device="cpu")
    t = Trainer(cfg, dict(n_layer=2, n_head=2, n_embd=32, knn_capacity=128, knn_topk=8))
    t.train()
    model, tok, meta = load_model(tmp_path / "run")
    assert meta["model"] == kind and type(model) is GPT and model.config.has_memory
    (toks,) = generate(model, tok, max_new_tokens=80, seed=0)
    assert len(toks) > 10
    # exact resume restores the memories too
    t2 = Trainer(cfg, dict(n_layer=2, n_head=2, n_embd=32, knn_capacity=128, knn_topk=8), resume=True)
    for key, v in t.memory.tensors().items():
        assert torch.equal(v, t2.memory.tensors()[key]), key


def test_faiss_search_finds_what_exact_search_finds():
    pytest.importorskip("faiss")
    exact = model(knn_layers=(0,), knn_capacity=120, knn_topk=8)
    fa = model(knn_layers=(0,), knn_capacity=120, knn_topk=8, knn_search="faiss")
    fa.load_state_dict(exact.state_dict())
    g = torch.Generator().manual_seed(3)
    mem = exact.new_memory(3)
    for s in range(3):  # 3 x 32 of 120 slots; padding leaves holes; row 2 is reset: empty
        valid = torch.rand(3, 32, generator=g) > 0.2
        mem.write(0, torch.randn(3, 2, 32, 16, generator=g), torch.randn(3, 2, 32, 16, generator=g), valid)
    mem.reset(torch.tensor([False, False, True]))
    q = torch.randn(3, 2, 5, 16, generator=g)
    a_scores, a_idx = exact.blocks[0].attn.retrieve(q, mem.knn[0])
    b_scores, b_idx = fa.blocks[0].attn.retrieve(q, mem.knn[0])
    valid = mem.knn[0]["valid"]
    for b in range(2):
        for h in range(2):
            for t in range(5):
                assert set(a_idx[b, h, t].tolist()) == set(b_idx[b, h, t].tolist())
                assert bool(valid[b, a_idx[b, h, t]].all())
    assert torch.allclose(a_scores[:2].sort(-1).values, b_scores[:2].sort(-1).values, atol=1e-5)
    assert bool((b_scores[2] == -1e4).all())  # an empty memory: every pick is masked
    # whole models agree, segment after segment
    idx, steps = data(B=2, T=48)
    ma, mb = exact.new_memory(2), fa.new_memory(2)
    for s in range(3):
        la, _ = exact(idx[:, 16 * s : 16 * s + 16], steps[:, 16 * s : 16 * s + 16], memory=ma)
        lb, _ = fa(idx[:, 16 * s : 16 * s + 16], steps[:, 16 * s : 16 * s + 16], memory=mb)
        assert torch.allclose(la, lb, atol=1e-4)


def test_attention_maps_over_the_xl_memory_match_one_pass():
    from midigen.model import attention_maps

    m = model(xl_memory=16)
    idx, steps = data()
    full = attention_maps(m, idx, steps)  # (B, 1, H, 32, 32)
    mem = m.new_memory(2)
    first = attention_maps(m, idx[:, :16], steps[:, :16], memory=mem)  # keys: 16 empty slots, then 16
    second = attention_maps(m, idx[:, 16:], steps[:, 16:], memory=mem)  # keys: segment 1, then 16
    assert first.shape == second.shape == (2, 1, 2, 16, 32)
    assert torch.all(first[..., :16] == 0)  # empty memory slots get nothing
    assert torch.allclose(first[..., 16:], full[..., :16, :16], atol=1e-5)
    assert torch.allclose(second, full[..., 16:, :], atol=1e-5)


def test_recording_shows_the_knn_retrievals():
    from midigen.model import recording

    m = model(xl_memory=16, knn_layers=(0,), knn_capacity=40, knn_topk=4)
    idx, steps = data(T=48)
    mem = m.new_memory(2)
    with torch.no_grad(), recording(m) as records:
        for s in range(3):
            before = {k: v.clone() for k, v in mem.knn[0].items()}  # the memory as the layer sees it
            _ = m(idx[:, 16 * s : 16 * s + 16], steps[:, 16 * s : 16 * s + 16], memory=mem)
            r = records[0][-1]
            assert r["knn_slots"].shape == r["knn_scores"].shape == (2, 2, 16, 4)
            q = m.blocks[0].attn.qkv(m.blocks[0].ln1(m.embed(idx[:, 16 * s : 16 * s + 16], steps[:, 16 * s : 16 * s + 16])))
            q = q[..., :32].view(2, 16, 2, 16).transpose(1, 2)
            scores, slots = m.blocks[0].attn.retrieve(q, before)
            assert torch.equal(r["knn_slots"].sort(-1).values, slots.sort(-1).values)
            assert torch.allclose(r["knn_scores"].sort(-1).values, scores.sort(-1).values, atol=1e-5)
            gate = torch.sigmoid(m.blocks[0].attn.gate)
            assert torch.allclose(r["knn_gate"], gate.expand(2, 2) * (s > 0))  # an empty memory adds nothing
            if s:
                assert bool(before["valid"].gather(1, r["knn_slots"].reshape(2, -1)).all())  # real memories only
    assert len(records[0]) == 3 and m.blocks[0].attn.record is None  # recording ends with the block


def test_knn_gate_starts_where_the_config_says_and_closed_it_adds_almost_nothing():
    x, steps = data(T=32)
    default = model(knn_layers=(0,), knn_capacity=64, knn_topk=4)
    assert torch.equal(default.blocks[0].attn.gate, torch.zeros(2))  # unchanged default: sigmoid(0) = 0.5
    closed = model(knn_layers=(0,), knn_capacity=64, knn_topk=4, knn_gate=-30.0)
    assert torch.equal(closed.blocks[0].attn.gate, torch.full((2,), -30.0))
    plain = model()  # the same weights (same seed, the gate adds no draw) without kNN memory
    assert GPTConfig.from_dict({}).knn_gate == 0.0  # configs saved before the option read as before
    with torch.no_grad():
        memory = closed.new_memory(2)
        for seg in range(2):  # the second segment retrieves from a filled memory, through a closed gate
            s = slice(16 * seg, 16 * seg + 16)
            got, _ = closed(x[:, s], steps[:, s], memory=memory)
            want, _ = plain(x[:, s], steps[:, s])
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
