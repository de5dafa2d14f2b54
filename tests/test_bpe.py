"""Action-aware BPE: lossless, never across a time step, trained on train only, sampling decodes."""

import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from midigen import Tokenizer, encode
from midigen.encoding.bpe import actions
from test_encoding_properties import scores


@pytest.fixture(scope="module")
def bach_tokens(bach_files):
    tok = Tokenizer()
    return tok, [encode(f, tok) for f in bach_files[:150]]


@pytest.mark.parametrize("size", [500, 1000, 3000])
def test_lossless_and_one_step_per_token_on_real_pieces(bach_tokens, size, bach_files):
    from conftest import SHARED_CORPUS

    vocab, toks = bach_tokens
    bpe = vocab.train_bpe(toks, size)
    assert len(bpe) <= size
    others = [encode(f, vocab) for f in bach_files[150:200]]
    from midigen import MidiError
    from midigen.check import find_midi_files

    for f in find_midi_files([SHARED_CORPUS]) if SHARED_CORPUS.is_dir() else []:  # when present
        try:
            others.append(encode(f, vocab))
        except MidiError:
            pass
    for t in toks[:30] + others:  # seen and unseen pieces
        e = bpe.apply_bpe(t)
        assert np.array_equal(bpe.to_base(e.ids), t.ids)  # lossless
        assert len(e) <= len(t)
        # every merged token stands at one time step: its base tokens share the token's step
        n = bpe.lengths[e.ids]
        base_steps = np.repeat(e.steps, n)
        assert np.array_equal(base_steps, t.steps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scores(max_notes=30))
def test_lossless_on_random_pieces(score):
    vocab = Tokenizer()
    bpe = _random_bpe()
    try:
        t = encode(score, vocab)
    except Exception:
        return
    assert np.array_equal(bpe.to_base(bpe.apply_bpe(t).ids), t.ids)
    assert np.array_equal(bpe.encode(score).ids, bpe.apply_bpe(t).ids)
    back = bpe.decode(bpe.apply_bpe(t).ids, strict=True)
    assert back.n_notes == t.stats["encoded_notes"]


_BPE_CACHE = {}


def _random_bpe():
    if "bpe" not in _BPE_CACHE:
        from conftest import BACH

        vocab = Tokenizer()
        _BPE_CACHE["bpe"] = vocab.train_bpe([encode(f, vocab) for f in sorted(BACH.glob("*.mid"))[:60]], 800)
    return _BPE_CACHE["bpe"]


def test_actions_split_at_time_steps_and_specials(bach_tokens):
    vocab, toks = bach_tokens
    t = toks[0]
    acts = actions(t.ids, t.steps, vocab.table)
    assert np.array_equal(np.concatenate(acts), t.ids)
    assert acts[0].tolist() == [vocab.sos_id] and acts[-1].tolist() == [vocab.eos_id]
    offsets = np.cumsum([0] + [len(a) for a in acts[:-1]])
    for a, o in zip(acts, offsets):
        assert len(set(t.steps[o : o + len(a)].tolist())) == 1


def test_save_load_and_mismatch(tmp_path, bach_tokens):
    from midigen.errors import VocabError

    vocab, toks = bach_tokens
    bpe = vocab.train_bpe(toks, 600)
    p = bpe.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(p)
    assert again == bpe
    assert np.array_equal(again.apply_bpe(toks[0]).ids, bpe.apply_bpe(toks[0]).ids)
    d = json.loads(p.read_text())
    d["merges"][0] = d["merges"][1]
    p.write_text(json.dumps(d))
    with pytest.raises(VocabError, match="hash mismatch"):
        Tokenizer.load(p)
    d["version"] = 7
    p.write_text(json.dumps(d))
    with pytest.raises(VocabError, match="version 7"):
        Tokenizer.load(p)
    with pytest.raises(ValueError, match="must exceed"):
        vocab.train_bpe(toks, 100)


def test_constrained_sampling_with_bpe_decodes_for_100_seeds(bach_tokens):
    from midigen.generate import generate
    from midigen.model import GPT, GPTConfig

    vocab, toks = bach_tokens
    bpe = vocab.train_bpe(toks, 1000)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(bpe), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
    for seed in range(100):
        (t,) = generate(model, bpe, max_new_tokens=40, seed=seed, min_length=20)
        base = bpe.to_base(t.ids)
        assert len(vocab.grammar.violations(base)) == 0, (seed, bpe.to_tokens(t.ids))
        assert len(bpe.grammar.violations(t.ids, min_length=20)) == 0, (seed, bpe.to_tokens(t.ids))
        bpe.decode(t.ids, strict=True)
        # steps of generated BPE tokens are those of their actions
        assert np.all(np.diff(t.steps) >= 0)


def test_prepare_trains_on_train_only_and_checkpoints_carry_it(tmp_path, bach_files):
    from midigen.checkpoint import CheckpointError, load_model
    from midigen.data import PreparedCorpus
    from midigen.data.prepare import prepare
    from midigen.evaluate import evaluate
    from midigen.train import TrainConfig, Trainer

    src = tmp_path / "src"
    src.mkdir()
    for f in bach_files[:40]:
        shutil.copy(f, src / f.name)
    out = tmp_path / "prep"
    m = prepare([src], out, workers=0, progress=False, valid_fraction=0.2, test_fraction=0.2, bpe_vocab=500).manifest
    assert m["bpe"]["trained_on"] == "train" and m["bpe"]["vocab_size"] <= 500
    base_train = PreparedCorpus(out, "train", base=True)
    # retraining on the train split alone reproduces the stored tokenizer exactly
    again = base_train.tokenizer.train_bpe([tuple(map(np.asarray, base_train.piece(i))) for i in range(len(base_train))], 500)
    stored = Tokenizer.load(out)
    assert again == stored and m["tokenizer"]["hash"] == stored.hash
    with_valid = base_train.tokenizer.train_bpe([tuple(map(np.asarray, c.piece(i))) for c in (base_train, PreparedCorpus(out, "valid", base=True))
                                                 for i in range(len(c))], 500)
    assert with_valid != stored  # so valid data would have changed it
    bpe_train = PreparedCorpus(out, "train")
    assert bpe_train.n_tokens < base_train.n_tokens
    for i in range(len(bpe_train)):
        assert np.array_equal(stored.to_base(np.asarray(bpe_train.piece(i)[0])), np.asarray(base_train.piece(i)[0]))
    # a model trained on it carries the tokenizer; another corpus's tokenizer is refused
    cfg = TrainConfig(data=str(out), out=str(tmp_path / "run"), batch_size=2, seq_len=32, max_steps=2, eval_interval=2,
                      eval_batches=1, warmup_steps=1, progress=False, device="cpu")
    Trainer(cfg, dict(n_layer=1, n_head=2, n_embd=32)).train()
    model, tok, meta = load_model(tmp_path / "run")
    assert isinstance(tok, Tokenizer) and tok == stored and meta["tokenizer"] == "bpe"
    other = tmp_path / "prep2"
    prepare([src], other, workers=0, progress=False, valid_fraction=0.2, test_fraction=0.2, bpe_vocab=450)
    with pytest.raises(ValueError, match="another BPE tokenizer"):
        evaluate(tmp_path / "run", other, samples=0)
    (tmp_path / "run" / "best" / "tokenizer.json").write_text((other / "tokenizer.json").read_text())
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_model(tmp_path / "run" / "best")


def test_sampled_merged_tokens_never_move_time_inside_themselves(bach_tokens):
    from midigen.generate import generate
    from midigen.model import GPT, GPTConfig

    vocab, toks = bach_tokens
    bpe = vocab.train_bpe(toks, 1000)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(bpe), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
    for seed in range(32):
        (t,) = generate(model, bpe, max_new_tokens=60, seed=seed, min_length=30)
        base = bpe.to_base(t.ids)
        # re-encode the decoded base sequence: every BPE token's base tokens share one step
        steps = np.repeat(t.steps, bpe.lengths[t.ids])
        from midigen.encoding.grammar import C_GAP_DUR, contexts

        ctx = contexts(vocab.table.kind[base])
        gap_at = np.flatnonzero(ctx == C_GAP_DUR)
        ends = np.cumsum(bpe.lengths[t.ids]) - 1
        assert np.isin(gap_at, ends).all(), seed  # a gap only ever closes a merged token
        assert len(steps) == len(base)
