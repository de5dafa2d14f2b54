"""`Tokenizer`: the one object that gives ids their meaning; its file; the old layout still loads."""

import json
import shutil

import numpy as np
import pytest

from legacy import old_bpe_json, old_vocab_json, to_old_layout
from midigen import EncodingConfig, PositionScore, Tokenizer, VocabError, decode, encode, read_midi
from midigen.encoding import KIND_NAMES, encode_position, encode_via_sparse, quantise, sorted_notes
from midigen.encoding.grammar import N_CONTEXTS
from midigen.encoding.index import encode_notes
from midigen.encoding.position import layout
from midigen.encoding.tokenizer import DURATION, GAP, INSTRUMENT, MERGED, NOTE, SPECIAL, TEMPO


@pytest.fixture(scope="module")
def bpe_tok(bach_files):
    base = Tokenizer()
    return base.train_bpe([base.encode(f) for f in bach_files[:80]], 700)


def test_layout_and_specials():
    t = Tokenizer(EncodingConfig.blog())
    assert t.tokens[:4] == ["<pad>", "<sos>", "<eos>", "<sep>"]
    assert t.pad_id == 0 and t.sos_id == 1 and t.eos_id == 2
    assert t.tokens[t.table.note_offset] == "n0" and t.tokens[t.table.dur_offset] == "d1"
    assert len(t) == 4 + 128 + 64 and not t.has_merges
    full = Tokenizer()
    assert "drums" in full.index and "i127" in full.index and "t120" in full.index
    assert full.dtype.__name__ == "uint16"


def test_save_load_round_trip(tmp_path, bpe_tok):
    t = Tokenizer(EncodingConfig(steps_per_beat=6, max_duration=48))
    p = t.save(tmp_path)
    assert p == tmp_path / "tokenizer.json"
    d = json.loads(p.read_text())
    assert d["format"] == "midigen.tokenizer" and d["version"] == 1 and d["merges"] == []
    assert d["encoding"]["steps_per_beat"] == 6 and len(d["hash"]) == 64
    assert Tokenizer.load(tmp_path) == t  # the folder
    assert Tokenizer.load(p, expected=EncodingConfig(steps_per_beat=6, max_duration=48)) == t  # the file
    q = bpe_tok.save(tmp_path / "bpe" / "tokenizer.json")
    again = Tokenizer.load(q)
    assert again == bpe_tok and again.merges == bpe_tok.merges and again.tokens == bpe_tok.tokens
    assert again != t and Tokenizer.load(q).hash == bpe_tok.hash


def test_hash_mismatch_and_edited_files_fail_clearly(tmp_path):
    p = Tokenizer().save(tmp_path)
    d = json.loads(p.read_text())
    d["tokens"][10] = "n999"
    p.write_text(json.dumps(d))
    with pytest.raises(VocabError, match=f"{p}: content hash mismatch"):
        Tokenizer.load(tmp_path)
    d["version"] = 99
    p.write_text(json.dumps(d))
    with pytest.raises(VocabError, match="version 99"):
        Tokenizer.load(p)
    p.write_text("{not json")
    with pytest.raises(VocabError, match="not valid JSON"):
        Tokenizer.load(p)
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(VocabError, match="not a midigen tokenizer"):
        Tokenizer.load(p)
    with pytest.raises(VocabError, match="no such tokenizer"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VocabError, match="no tokenizer.json here"):
        Tokenizer.load(tmp_path / "empty")


def test_mismatching_config_fails_clearly(tmp_path):
    Tokenizer(EncodingConfig(steps_per_beat=6)).save(tmp_path)
    with pytest.raises(VocabError, match=r"different encoding configuration.*steps_per_beat: file has 6, expected 4"):
        Tokenizer.load(tmp_path, expected=EncodingConfig())


def test_token_strings():
    t = Tokenizer(EncodingConfig.blog())
    ids = t.to_ids("<sos> n1 d4")
    assert t.to_tokens(ids) == ["<sos>", "n1", "d4"]
    with pytest.raises(VocabError, match="unknown token 'x9'"):
        t.to_ids(["x9"])


def test_bad_configs_rejected():
    with pytest.raises(ValueError):
        EncodingConfig(steps_per_beat=0)
    with pytest.raises(ValueError):
        EncodingConfig(min_pitch=50, max_pitch=40)
    with pytest.raises(ValueError, match="max_silence"):
        EncodingConfig(max_duration=64, max_silence=10)


def test_train_bpe_returns_a_new_tokenizer(bach_files, bpe_tok):
    base = Tokenizer()
    n = len(base.table)  # the base vocabulary (413 with parts and 16 velocity bins)
    assert not base.has_merges and len(base) == n  # untouched
    assert bpe_tok.has_merges and n < len(bpe_tok) <= 700 and len(bpe_tok.merges) >= len(bpe_tok) - n
    assert bpe_tok.without_merges() == base
    with pytest.raises(ValueError, match="has merges already"):
        bpe_tok.train_bpe([], 800)
    with pytest.raises(ValueError, match="must exceed"):
        base.train_bpe([], 100)
    # encode applies the merges; decode and to_base undo them exactly
    toks = bpe_tok.encode(bach_files[200])
    plain = base.encode(bach_files[200])
    assert len(toks) < len(plain)
    assert np.array_equal(bpe_tok.to_base(toks.ids), plain.ids)
    assert np.array_equal(bpe_tok.apply_bpe(plain).ids, toks.ids)
    assert np.array_equal(bpe_tok.decode(toks.ids, strict=True).pitch, base.decode(plain.ids).pitch)
    assert bpe_tok.notes_per_token()[toks.ids].sum() == plain.stats["encoded_notes"]
    merged = [t for t in bpe_tok.to_tokens(toks.ids) if "+" in t]
    assert merged and all(all(p in base.index for p in m.split("+")) for m in merged)


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog()], ids=["default", "blog"])
def test_encode_equals_the_step_by_step_path_on_real_files(bach_files, shared_files, config):
    """tokenizer.encode == the pipeline spelled out (quantise, sort, rows, ids) == the sparse path."""
    tok = Tokenizer(config)
    for f in bach_files[::40] + shared_files:
        score = read_midi(f)
        toks = tok.encode(score)
        notes = sorted_notes(quantise(score, config))
        rows = encode_position(layout(notes), tok)
        assert np.array_equal(toks.ids, rows.ids) and np.array_equal(toks.steps, rows.steps), f
        assert np.array_equal(toks.ids, encode_notes(notes, tok).ids)
        assert np.array_equal(toks.ids, encode(score, tok).ids)
        if len(toks) < 20000:
            assert np.array_equal(toks.ids, encode_via_sparse(score, tok).ids)
        a, b = tok.decode(toks.ids, strict=True), decode(toks.ids, tok)
        assert np.array_equal(a.pitch, b.pitch) and np.array_equal(a.start, b.start)
        assert np.array_equal(PositionScore.from_score(score, config).pitch, layout(notes).pitch)


@pytest.fixture(scope="module")
def shared_files():
    from conftest import SHARED_CORPUS
    from midigen import MidiError
    from midigen.check import find_midi_files

    out = []
    for f in find_midi_files([SHARED_CORPUS]) if SHARED_CORPUS.is_dir() else []:
        try:
            Tokenizer().encode(f)
            out.append(f)
        except MidiError:
            pass
    return out


def test_kinds_and_token_kinds_tell_gaps_from_note_durations(bpe_tok):
    t = Tokenizer()
    assert KIND_NAMES == ("special", "note", "duration", "gap", "tempo", "instrument", "merged", "velocity")
    ids = t.to_ids("<sos> t120 i0 n60 d4 n64 d2 <sep> d4 n62 d4 <sep> d64 <sep> d3 <eos>")
    assert t.kinds[ids].tolist() == [SPECIAL, TEMPO, INSTRUMENT, NOTE, DURATION, NOTE, DURATION, GAP, DURATION,
                                     NOTE, DURATION, GAP, DURATION, GAP, DURATION, SPECIAL]
    got = [KIND_NAMES[k] for k in t.token_kinds(ids)]
    assert got == ["special", "tempo", "instrument", "note", "duration", "note", "duration", "gap", "gap",
                   "note", "duration", "gap", "gap", "gap", "gap", "special"]
    # merged tokens: MERGED; a duration after a merged token that ends with <sep> is a gap
    sep_end = next(i for i in range(t.n_base, len(bpe_tok)) if bpe_tok.tokens[i].endswith("+<sep>"))
    ids = np.array([bpe_tok.sos_id, bpe_tok.index["i0"], sep_end, bpe_tok.index["d4"], bpe_tok.eos_id])
    assert bpe_tok.token_kinds(ids).tolist() == [SPECIAL, INSTRUMENT, MERGED, GAP, SPECIAL]


def test_grammar_tables_for_base_and_merged_tokens(bpe_tok):
    g = bpe_tok.grammar
    V = len(bpe_tok)
    assert g.allowed.shape == g.next_ctx.shape == g.advance.shape == (N_CONTEXTS, V)
    for arr in (g.needs_instrument, g.gives_instrument, g.has_eos, g.has_note, g.has_duration):
        assert arr.shape == (V,)
    base = Tokenizer().grammar
    n = bpe_tok.n_base
    assert np.array_equal(g.allowed[:, :n], base.allowed) and np.array_equal(g.next_ctx[:, :n], base.next_ctx)
    # a merged gap "...+<sep>+d4" moves time 4 steps on; "d4+n67" is never allowed right after <sep>
    from midigen.encoding.grammar import C_NOTE_DUR, C_SEP

    gaps = [i for i in range(n, V) if bpe_tok.tokens[i].endswith("<sep>+d4")]
    assert gaps and all(g.advance[C_NOTE_DUR, i] == 4 or not g.allowed[C_NOTE_DUR, i] for i in gaps)
    assert any(g.allowed[C_NOTE_DUR, i] for i in gaps)
    starts_with_dur = [i for i in range(n, V) if bpe_tok.tokens[i].split("+")[0].startswith("d")
                       and bpe_tok.tokens[i].split("+")[1].startswith("n")]
    assert not g.allowed[C_SEP, starts_with_dur].any()


def test_old_layout_files_load(tmp_path, bpe_tok):
    (tmp_path / "vocab.json").write_text(json.dumps(old_vocab_json(bpe_tok)))
    assert Tokenizer.load(tmp_path) == Tokenizer()  # a folder with only vocab.json
    assert Tokenizer.load(tmp_path / "vocab.json") == Tokenizer()
    (tmp_path / "tokenizer.json").write_text(json.dumps(old_bpe_json(bpe_tok)))
    old = Tokenizer.load(tmp_path)
    assert old == bpe_tok and old.merges == bpe_tok.merges
    d = old_vocab_json(bpe_tok)
    d["tokens"][10] = "n999"
    (tmp_path / "vocab.json").write_text(json.dumps(d))
    with pytest.raises(VocabError, match="token list does not match"):
        Tokenizer.load(tmp_path / "vocab.json")


def test_old_layout_corpus_and_checkpoint_load(tmp_path, bach_files):
    """Prepare and train tiny real ones, rewrite them into the old layout, and use them."""
    from midigen.checkpoint import load_model
    from midigen.data import PreparedCorpus
    from midigen.data.prepare import prepare
    from midigen.evaluate import evaluate
    from midigen.train import TrainConfig, Trainer

    src = tmp_path / "src"
    src.mkdir()
    for f in bach_files[:30]:
        shutil.copy(f, src / f.name)
    new = tmp_path / "prep"
    prepare([src], new, workers=0, progress=False, valid_fraction=0.2, test_fraction=0.2, bpe_vocab=450)
    assert (new / "tokenizer.json").is_file() and not (new / "vocab.json").exists()
    cfg = TrainConfig(data=str(new), out=str(tmp_path / "run"), batch_size=2, seq_len=32, max_steps=2, eval_interval=2,
                      eval_batches=1, warmup_steps=1, progress=False, device="cpu")
    Trainer(cfg, dict(n_layer=1, n_head=2, n_embd=32)).train()
    ckpt = tmp_path / "run" / "best"
    assert sorted(json.loads((ckpt / "checksums.json").read_text())) == ["config.json", "model.safetensors", "tokenizer.json"]
    before = evaluate(ckpt, new, samples=0)["likelihood"]["loss"]
    corpus_new = [np.asarray(PreparedCorpus(new, "test").piece(i)[0]) for i in range(2)]

    old = tmp_path / "prep-old"
    shutil.copytree(new, old)
    tok = to_old_layout(old)
    assert tok.has_merges and json.loads((old / "tokenizer.json").read_text())["format"] == "midigen.bpe"
    c = PreparedCorpus(old, "test")
    assert c.tokenizer == tok and all(np.array_equal(np.asarray(c.piece(i)[0]), corpus_new[i]) for i in range(2))
    assert PreparedCorpus(old, "test", base=True).tokenizer == tok.without_merges()
    to_old_layout(ckpt)
    assert (ckpt / "vocab.json").is_file()
    model, loaded, meta = load_model(ckpt)
    assert loaded == tok
    assert evaluate(ckpt, old, samples=0)["likelihood"]["loss"] == pytest.approx(before, abs=1e-6)
    # an old checkpoint is rewritten in place into the new layout (as the bundled bach-gpt was)
    from midigen.checkpoint import upgrade_checkpoint

    upgrade_checkpoint(ckpt)
    assert not (ckpt / "vocab.json").exists()
    assert sorted(json.loads((ckpt / "checksums.json").read_text())) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert load_model(ckpt)[1] == tok
    # preparing the old-layout corpus again moves it to the new layout
    prepare([src], old, workers=0, progress=False, valid_fraction=0.2, test_fraction=0.2, bpe_vocab=450)
    assert not (old / "vocab.json").exists() and Tokenizer.load(old / "tokenizer.json") == tok
    # and a base (no BPE) old corpus too
    base = tmp_path / "base"
    prepare([src], base, workers=0, progress=False)
    to_old_layout(base)
    assert sorted(p.name for p in base.glob("*.json") if "pieces" not in p.name) == ["manifest.json", "vocab.json"]
    assert PreparedCorpus(base, "train").tokenizer == Tokenizer()
