"""What is sounding at each token (`midigen.encoding.sounding`), and the model that embeds it.

The state is held to its definition, computed the slow way (every note checked at every token),
on random scores with parts and on the chorales; the sampler's token-by-token tracker to the
vectorised pass; a model given the embeddings to the model without them (zero at first, so
``--init-from`` fine-tunes from the same function); and training, resuming and sampling with it.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BACH, ROOT
from midigen import EncodingConfig, Tokenizer, encode
from midigen.checkpoint import CheckpointError, init_weights_from, load_model, save_checkpoint
from midigen.encoding import sounding as S
from midigen.encoding.vocab import K_DUR, K_NOTE, K_PART, K_SOS
from midigen.generate import generate
from midigen.model import GPT, GPTConfig
from midigen.model import gpt as G
from test_parts_velocity import _kept, part_scores


def slow_sounding(ids, steps, tok):
    """The definition, note by note: a note counts from its duration token on, while its step lies
    in [onset, onset + duration) of the same piece; its part is the last part token before it."""
    kind, value = tok.table.kind[ids], tok.table.value[ids]
    notes, part, piece = [], None, -1
    for i in range(len(ids)):
        if kind[i] == K_SOS:
            part, piece = None, piece + 1
        elif kind[i] == K_PART:
            part = int(value[i])
        elif kind[i] == K_DUR and i and kind[i - 1] == K_NOTE:
            notes.append((i, piece, int(steps[i - 1]), int(steps[i - 1] + value[i]), part))
    out = []
    piece = -1
    for t in range(len(ids)):
        piece += kind[t] == K_SOS
        on = [n for n in notes if n[0] <= t and n[1] == piece and n[2] <= steps[t] < n[3]]
        mask = sum({1 << p for *_, p in on if p is not None and p < S.PART_BITS})
        nxt = min(n[3] for n in on) - steps[t] if on else 0
        out.append(S.pack(mask, nxt, len(on)))
    return np.array(out, np.int64)


CONFIGS = st.sampled_from([
    EncodingConfig(parts=True, velocity_bins=8, max_silence=None),
    EncodingConfig(parts=True, max_silence=None),
    EncodingConfig(velocity_bins=4, max_silence=None),  # programs, no parts: no part bits
    EncodingConfig.blog(max_silence=None),
])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(part_scores(max_notes=25), min_size=1, max_size=3), CONFIGS)
def test_the_state_is_what_sounds_at_each_token(scores, cfg):
    tok = Tokenizer(cfg)
    pieces = [encode(s, tok) for s in scores if len(_kept(s, cfg))]
    if not pieces:
        return
    ids = np.concatenate([p.ids for p in pieces]).astype(np.int64)
    steps = np.concatenate([p.steps for p in pieces]).astype(np.int64)
    state = S.sounding(ids, steps, tok)  # pieces back to back, as in a prepared split
    assert np.array_equal(state, slow_sounding(ids, steps, tok))
    assert np.array_equal(state, np.concatenate([S.sounding(p.ids, p.steps, tok) for p in pieces]))
    tracker = S.SoundingTracker(tok, 2)  # the sampler's way: token by token, two rows alike
    for i, s, want in zip(ids, steps, state):
        got = tracker.push(np.array([i, i]), np.array([s, s]))
        assert got[0] == got[1] == want
    parts, nxt, count = S.unpack(state)
    assert (count >= sum((parts >> b) & 1 for b in range(S.PART_BITS))).all()  # (a part may sound several notes)
    assert ((nxt > 0) == (count > 0)).all()
    if not cfg.parts:
        assert not parts.any()


def test_chorale_voices_and_chunks(bach_files):
    """A chorale: after most time steps every part sounds; a long split is
    worked through in chunks of whole pieces with the same result."""
    tok = Tokenizer()
    pieces = [encode(f, tok) for f in bach_files[:6]]
    ids = np.concatenate([p.ids for p in pieces]).astype(np.int64)
    steps = np.concatenate([p.steps for p in pieces]).astype(np.int64)
    whole = S.sounding(ids, steps, tok)
    old = S.CHUNK_TOKENS
    try:
        S.CHUNK_TOKENS = 500
        assert np.array_equal(S.sounding(ids, steps, tok), whole)
    finally:
        S.CHUNK_TOKENS = old
    first = pieces[0]
    parts, nxt, count = S.unpack(S.sounding(first.ids, first.steps, tok))
    seps = np.flatnonzero(first.ids == tok.sep_id)
    n = first.to_score().n_parts  # (four voices, five parts where an instrument doubles one)
    assert n >= 4 and (parts[seps] == 2**n - 1).mean() > 0.9 and (count[seps] == n).mean() > 0.9
    gap = tok.table.value[first.ids[seps + 1]]
    assert (nxt[seps + 1] == gap).mean() > 0.95  # legato: each gap ends where the first sounding note does


def test_the_layout_is_shared_and_bpe_is_refused():
    assert (G.SOUNDING_PART_BITS, G.SOUNDING_NEXT_SHIFT, G.SOUNDING_NEXT_MAX, G.SOUNDING_COUNT_SHIFT,
            G.SOUNDING_COUNT_MAX) == (S.PART_BITS, S.NEXT_SHIFT, S.NEXT_MAX, S.COUNT_SHIFT, S.COUNT_MAX)
    p = S.pack([5, 2**31], [0, 99], [3, 40])
    assert [a.tolist() for a in S.unpack(p)] == [[5, 2**31], [0, 63], [3, 31]]
    tok = Tokenizer()
    bpe = tok.train_bpe([encode(BACH / "bwv1.6.mid", tok)], vocab_size=len(tok) + 20)
    with pytest.raises(ValueError, match="BPE"):
        S.sounding([1], [0], bpe)


def _tiny(sounding: bool, vocab: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=2, n_embd=32, sounding=sounding))


def test_the_embeddings_start_at_zero_and_fine_tune_from_a_model_without_them(tmp_path):
    tok = Tokenizer()
    toks = encode(BACH / "bwv1.6.mid", tok)
    ids = torch.as_tensor(toks.ids[:64].astype(np.int64))[None]
    steps = torch.as_tensor(toks.steps[:64].astype(np.int64))[None]
    state = torch.as_tensor(S.sounding(toks.ids[:64], toks.steps[:64], tok))[None]
    plain, with_state = _tiny(False, len(tok)), _tiny(True, len(tok))
    save_checkpoint(tmp_path / "plain", plain, tok, {"model": "gpt", "model_config": plain.config.to_dict()})
    fresh = init_weights_from(with_state, tmp_path / "plain", tok)
    assert fresh == ["sounding_count.weight", "sounding_next.weight", "sounding_parts.weight"]
    with torch.no_grad():
        assert torch.allclose(plain(ids, steps)[0], with_state(ids, steps, sounding=state)[0], atol=1e-6)
        with pytest.raises(ValueError, match="sounding"):
            with_state(ids, steps)
        with_state.sounding_next.weight.normal_()  # once learned, the state changes the logits
        assert not torch.allclose(plain(ids, steps)[0], with_state(ids, steps, sounding=state)[0], atol=1e-3)
    with pytest.raises(CheckpointError, match="tokenizer"):
        init_weights_from(with_state, tmp_path / "plain", Tokenizer(EncodingConfig(velocity_bins=4)))
    wide = GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=64))
    with pytest.raises(CheckpointError, match="shapes"):
        init_weights_from(wide, tmp_path / "plain", tok)


def test_sampling_feeds_the_model_the_state_of_its_own_tokens(monkeypatch):
    """Every forward pass of cached sampling gets the state `sounding` gives for the sequence so far."""
    tok = Tokenizer()
    model = _tiny(True, len(tok))
    with torch.no_grad():
        model.sounding_next.weight.normal_()
    seen = []
    forward = model.forward

    def spy(idx, steps=None, *a, **kw):
        seen.append((idx.clone(), kw.get("sounding").clone()))
        return forward(idx, steps, *a, **kw)

    monkeypatch.setattr(model, "forward", spy)
    prompt = encode(BACH / "bwv1.6.mid", tok)
    out = generate(model, tok, prompt, num_samples=2, max_new_tokens=90, seed=0, prompt_beats=4)  # slides past 64
    first = len(seen[0][0][0])  # the prompt's last tokens; then one token per pass, or a slide's re-fill
    end = int(np.searchsorted(prompt.steps, 16, side="left"))  # (4 beats: where the prompt was cut)
    checked = 0
    for k, (idx, state) in enumerate(seen):
        end = end if k == 0 else end + 1
        n = idx.shape[1]
        assert k == 0 and n == first or n == 1 or n == 48  # (block 64: a slide keeps 3/4)
        for row, sample in enumerate(out):
            if end <= len(sample):  # (after <eos> a row is padding)
                assert np.array_equal(idx[row].numpy(), sample.ids[end - n : end])
                assert np.array_equal(state[row].numpy(), S.sounding(sample.ids[:end], sample.steps[:end], tok)[-n:])
                checked += 1
    assert checked > 100


@pytest.mark.slow
def test_cli_fine_tunes_with_the_state_then_samples(tmp_path):
    from midigen.data.prepare import prepare

    src = tmp_path / "src"
    src.mkdir()
    for f in sorted(BACH.glob("*.mid"))[:30]:
        (src / f.name).write_bytes(f.read_bytes())
    prepare([src], tmp_path / "data", workers=0, progress=False, valid_fraction=0.2, test_fraction=0.1)
    base = ["train", "--data", str(tmp_path / "data"), "--max-steps", "4", "--eval-interval", "2", "--seq-len", "32",
            "--batch-size", "4", "-q"]

    def midigen(*args):
        r = subprocess.run([sys.executable, "-m", "midigen", *args], capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        return r.stdout

    midigen(*base, "--out", str(tmp_path / "plain"), "--n-layer", "1", "--n-embd", "32", "--n-head", "2")
    # the checkpoint's model (no size flags), with the sounding embeddings added
    out = midigen(*base, "--out", str(tmp_path / "snd"), "--sounding", "--init-from", str(tmp_path / "plain"),
                  "--max-steps", "6", "--eval-interval", "3")
    assert "new: sounding_count.weight, sounding_next.weight, sounding_parts.weight" in out
    midigen("train", "--resume", str(tmp_path / "snd"), "--max-steps", "8", "-q")
    model, tok, _ = load_model(tmp_path / "snd")
    assert model.config.sounding and json_step(tmp_path / "snd") == 8
    assert (model.config.n_layer, model.config.n_embd) == (1, 32)
    midigen("generate", "--checkpoint", str(tmp_path / "snd"), "--out", str(tmp_path / "g.mid"), "--prompt",
            str(BACH / "bwv1.6.mid"), "--prompt-beats", "4", "--max-tokens", "60", "--seed", "0")
    assert (tmp_path / "g.mid").stat().st_size > 0


def json_step(run):
    import json

    return json.loads((run / "latest" / "trainer_state.json").read_text())["step"]


@pytest.fixture(scope="module")
def chorale_corpus(tmp_path_factory):
    from midigen.data.prepare import prepare

    d = tmp_path_factory.mktemp("chorales")
    (d / "src").mkdir()
    for f in sorted(BACH.glob("*.mid"))[:12]:
        (d / "src" / f.name).write_bytes(f.read_bytes())
    prepare([d / "src"], d / "prepared", workers=0, progress=False, valid_fraction=0.2, test_fraction=0.1)
    return d / "prepared"


@pytest.mark.parametrize("loc", ["disk", "ram", "cpu"])
@pytest.mark.parametrize("strategy", ["random_windows", "per_song", "contiguous"])
def test_batches_carry_the_state_of_their_tokens(chorale_corpus, loc, strategy):
    """Every location and strategy: each row's states are the corpus's at its tokens, 0 on padding."""
    from midigen.data import PreparedCorpus, make_batches

    c = PreparedCorpus(chorale_corpus, location=loc)
    disk = PreparedCorpus(chorale_corpus)
    flat = S.sounding(np.asarray(disk.tokens), np.asarray(disk.steps), c.tokenizer)
    assert flat.any()
    rows = 0
    for b in make_batches(c, strategy, 3, 40, sounding=True):
        for r in range(len(b["x"])):
            start, n = int(b["start"][r]), int((b["piece"][r] >= 0).sum())
            if start >= 0:
                assert np.array_equal(b["sounding"][r, :n].numpy(), flat[start : start + n])
                assert not b["sounding"][r, n:].any()
                rows += 1
    assert rows >= 8  # (per_song: one row per training piece)
    assert "sounding" not in next(iter(make_batches(c, strategy, 3, 40)))
