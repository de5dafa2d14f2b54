"""Sampling: grammar-constrained output always decodes; the KV cache changes nothing; long pieces."""

import numpy as np
import pytest
import torch

from midigen import EncodingConfig, MidiError, Tokenizer, decode
from midigen.generate import SamplingConfig, _filter, generate, prompt_from_midi
from midigen.model import GPT, GPTConfig


def untrained(tok, block=64, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=len(tok), block_size=block, n_layer=2, n_head=2, n_embd=32, **kw)).eval()


@pytest.mark.parametrize("config", [EncodingConfig(), EncodingConfig.blog(), EncodingConfig(parts=True, velocity_bins=8)],
                         ids=["default", "blog", "parts+velocity"])
def test_constrained_sampling_decodes_for_100_seeds(config):
    # An untrained model is the worst case: it has no idea of the grammar.
    tok = Tokenizer(config)
    model = untrained(tok)
    grammar = tok.grammar
    for seed in range(100):
        (toks,) = generate(model, tok, max_new_tokens=80, seed=seed, min_length=30)
        assert len(grammar.violations(toks.ids, min_length=30)) == 0, seed
        decode(toks.ids, tok, strict=True)
        assert np.all(np.diff(toks.steps) >= 0)


def test_unconstrained_sampling_from_an_untrained_model_breaks_the_grammar():
    tok = Tokenizer()
    (toks,) = generate(untrained(tok), tok, max_new_tokens=80, seed=0, constrained=False)
    assert len(tok.grammar.violations(toks.ids)) > 0  # what the constraint protects from


def test_generated_steps_match_the_encoders():
    tok = Tokenizer()
    (toks,) = generate(untrained(tok), tok, max_new_tokens=150, seed=3, min_length=150)
    from midigen import encode

    again = encode(decode(toks.ids, tok, strict=True), tok)
    # the decoded piece re-encodes to the same steps wherever the tokens are the same
    n = min(len(again), len(toks)) - 2
    same = again.ids[:n] == toks.ids[:n]
    assert np.array_equal(again.steps[:n][same], toks.steps[:n][same])


def test_cached_greedy_generation_equals_recomputing_everything():
    tok = Tokenizer(EncodingConfig.blog())
    model = untrained(tok, block=128)
    (toks,) = generate(model, tok, max_new_tokens=40, top_k=1, seed=0, constrained=False)
    ids = torch.tensor(toks.ids[:1], dtype=torch.long)[None]
    steps = torch.tensor(toks.steps[:1], dtype=torch.long)[None]
    for t in range(1, len(toks)):
        logits, _ = model(ids, steps)
        nxt = int(logits[0, -1].argmax())
        assert nxt == toks.ids[t]
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        steps = torch.cat([steps, torch.tensor([[int(toks.steps[t])]])], 1)


def test_pieces_longer_than_the_block_slide():
    tok = Tokenizer()
    model = untrained(tok, block=32)
    outs = generate(model, tok, num_samples=3, max_new_tokens=150, seed=1, min_length=150)
    for toks in outs:
        assert len(toks) >= 100  # far past the 32-token block
        decode(toks.ids, tok, strict=True)


def test_prompt_continuation(bach_files):
    tok = Tokenizer()
    prompt = prompt_from_midi(bach_files[0], tok, beats=4)
    assert prompt.steps.max() < 4 * 4 + 1
    (toks,) = generate(untrained(tok), tok, prompt=prompt, max_new_tokens=60, seed=0)
    assert np.array_equal(toks.ids[: len(prompt)], prompt.ids)
    assert toks.steps[len(prompt)] >= prompt.steps[-1]
    decode(toks.ids, tok, strict=True)


def test_top_p_and_top_k_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(_filter(logits, None, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(_filter(logits, 1, None))
    assert kept.tolist() == [[True, False, False, False]]
    assert torch.isfinite(_filter(logits, None, 0.01)).sum() == 1  # always keeps the best


def test_note_and_duration_temperatures():
    tok = Tokenizer()
    from midigen.encoding.grammar import C_NOTE, C_SEP
    from midigen.generate import _Tables

    t = _Tables(tok, SamplingConfig(temperature=1.0, note_temperature=0.5, duration_temperature=2.0), "cpu")
    assert float(t.inv_temp[C_NOTE, tok.index["n60"]]) == 2.0
    assert float(t.inv_temp[C_NOTE, tok.index["d4"]]) == 0.5  # a note's duration
    assert float(t.inv_temp[C_SEP, tok.index["d4"]]) == 0.5  # a gap: duration_temperature too
    assert float(t.inv_temp[C_NOTE, tok.index["<sep>"]]) == 1.0
    # the rhythm apart from the notes' lengths: gaps (a duration after <sep>) by gap_temperature
    t = _Tables(tok, SamplingConfig(duration_temperature=0.5, gap_temperature=1.25), "cpu")
    assert float(t.inv_temp[C_NOTE, tok.index["d4"]]) == 2.0
    assert float(t.inv_temp[C_SEP, tok.index["d4"]]) == pytest.approx(0.8)


def test_int8_model_samples_decodable_music_close_to_fp32():
    from midigen.generate import quantize_for_cpu

    tok = Tokenizer()
    model = untrained(tok, block=64)
    q = quantize_for_cpu(model)
    ids = torch.randint(3, len(tok), (1, 20))
    steps = torch.arange(20)[None]
    a, _ = model(ids, steps)
    b, _ = q(ids, steps)
    assert torch.allclose(a.softmax(-1), b.softmax(-1), atol=0.02)
    (toks,) = generate(q, tok, max_new_tokens=60, seed=0)
    decode(toks.ids, tok, strict=True)


def test_prompt_as_a_score_or_a_midi_path(bach_files):
    import midigen

    tok = Tokenizer()
    model = untrained(tok)
    expected = prompt_from_midi(bach_files[0], tok, beats=4)
    for prompt in (bach_files[0], str(bach_files[0]), midigen.read_midi(bach_files[0])):
        (toks,) = generate(model, tok, prompt, prompt_beats=4, max_new_tokens=20, seed=0)
        assert np.array_equal(toks.ids[: len(expected)], expected.ids)
    (whole,) = generate(model, tok, bach_files[0], max_new_tokens=5, seed=0)  # no cut: the whole piece
    assert len(whole) > len(tok.encode(bach_files[0])) - 1
    (cut,) = generate(model, tok, tok.encode(bach_files[0]), prompt_beats=4, max_new_tokens=20, seed=0)
    assert np.array_equal(cut.ids[: len(expected)], expected.ids)  # Tokens are cut too


def test_a_wrong_prompt_or_sampling_parameter_says_what_to_pass():
    tok = Tokenizer()
    model = untrained(tok)
    with pytest.raises(TypeError, match="prompt must be Tokens .* a midigen.Score or a MIDI file's path"):
        generate(model, tok, [1, 2, 3])
    with pytest.raises(ValueError, match="another tokenizer than the model's"):
        generate(model, tok, Tokenizer(EncodingConfig.blog()).encode(_piece()))
    with pytest.raises(ValueError, match=r"generate\(\): top_p must lie in \(0, 1\], got 2"):
        generate(model, tok, top_p=2)
    with pytest.raises(ValueError, match=r"generate\(\): temperature must be > 0, got 0"):
        generate(model, tok, temperature=0)
    with pytest.raises(ValueError, match="unknown SamplingConfig key: 'temprature'"):
        generate(model, tok, temprature=0.5)
    with pytest.raises(MidiError, match="nope.mid"):
        generate(model, tok, "nope.mid")


def test_generated_tokens_carry_their_tokenizer():
    tok = Tokenizer()
    (toks,) = generate(untrained(tok), tok, max_new_tokens=30, seed=0, min_length=20)
    assert toks.tokenizer is tok
    assert toks.to_score().n_notes == tok.decode(toks.ids).n_notes
    assert tok.encode(_piece()).tokenizer is tok


def _piece():
    import midigen

    return midigen.Score.from_notes([60, 64, 67], [0, 480, 960], [480, 960, 1440])


def test_a_continuation_keeps_the_prompts_part_names(bach_files):
    """Token ids carry no names: a continuation of a chorale decodes with the prompt's voices' names."""
    from midigen.checkpoint import load_model

    model, tok, _ = load_model("bach-gpt")
    (out,) = generate(model, tok, bach_files[0], prompt_beats=4, max_new_tokens=16, seed=0)
    names = tok.encode(bach_files[0]).part_names
    assert out.part_names == names and out.to_score().part_names[: len(names)] == names and "Soprano" in names
