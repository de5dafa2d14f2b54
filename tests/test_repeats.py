"""Repetition-aware evaluation: tokens of bars heard before (up to transposition), near or far."""

import numpy as np
import pytest

from midigen import Score, Tokenizer
from midigen.encoding.tokenizer import NOTE
from midigen.repeats import (
    FIRST_SEGMENT,
    GROUPS,
    NOVEL,
    REPEAT_FAR,
    REPEAT_NEAR,
    group_counts,
    repeat_groups,
)

Q = 480  # ticks per quarter = 4 steps; bars of 4 beats = 16 steps
TOK = Tokenizer()

# bar contents: (pitch, beat, beats long)
A = [(60, 0, 1), (64, 1, 1), (67, 2, 2)]
B = [(62, 0, 2), (65, 2, 1), (69, 3, 1)]
C = [(55, 0, 2), (57, 2, 1), (59, 3, 1)]
D = [(50, 0, 1), (53, 1, 2), (57, 3, 1)]
ONE = [(48, 0, 4)]


def piece(bars, drums=()):
    """A score of bars given as (content, transposition); ``drums``: bar numbers with a kick drum."""
    p, s, e, d = [], [], [], []
    for b, (content, shift) in enumerate(bars):
        for pitch, beat, dur in content:
            p.append(pitch + shift), s.append((4 * b + beat) * Q), e.append((4 * b + beat + dur) * Q), d.append(False)
        if b in drums:
            p.append(36), s.append(4 * b * Q), e.append((4 * b + 1) * Q), d.append(True)
    return Score.from_notes(p, s, e, is_drum=d)


def positions_of_bar(tokens, bar):
    """Token positions whose step lies in ``bar`` (<sos>/<eos> excluded)."""
    pos = np.flatnonzero(tokens.steps // 16 == bar)
    return pos[(pos > 0) & (pos < len(tokens) - 1)]


# bar 3 repeats bar 2 up 2 semitones (close by), bar 4 repeats bar 0 up 3, bar 6 repeats bar 1;
# bar 7 is one note, like no other bar
SONG = [(A, 0), (B, 0), (C, 0), (C, 2), (A, 3), (D, 0), (B, 0), (ONE, 0)]


def test_repeated_bars_near_and_far():
    t = TOK.encode(piece(SONG))
    bar = {b: positions_of_bar(t, b) for b in range(8)}
    # segments of `context` tokens, the second starting at bar 2's first note: bars 2 and 3 in it
    context = int(bar[2][0])
    assert bar[3][-1] <= 2 * context
    g, d = repeat_groups(t.ids, t.steps, TOK, context, return_distance=True)
    assert (g[: context + 1] == FIRST_SEGMENT).all() and (g[context + 1 :] != FIRST_SEGMENT).all()
    assert (g[bar[2][bar[2] > context]] == NOVEL).all()
    assert (g[bar[3]] == REPEAT_NEAR).all()  # bar 2, transposed, is in the same segment
    assert (g[bar[4]] == REPEAT_FAR).all() and (g[bar[6]] == REPEAT_FAR).all()  # bars 0 and 1: only memory
    assert (g[bar[5]] == NOVEL).all() and (g[bar[7]] == NOVEL).all() and g[-1] == NOVEL  # and <eos>
    # the distance points at the same token of the earlier bar: the note a transposition lower
    first = {b: p[TOK.kinds[t.ids[p]] == NOTE] for b, p in bar.items()}
    for b, earlier, shift in ((3, 2, 2), (4, 0, 3), (6, 1, 0)):
        assert (d[bar[b]] == first[b][0] - first[earlier][0]).all()  # (bar 0 opens with t120 i0)
        notes = bar[b][TOK.kinds[t.ids[bar[b]]] == NOTE]
        assert np.array_equal(t.ids[notes - d[notes]].astype(int) + shift, t.ids[notes].astype(int))
    # a short context: every repeat is beyond it; a long one: all is the first segment
    g = repeat_groups(t.ids, t.steps, TOK, 4)
    assert (g[bar[3]] == REPEAT_FAR).all() and (g[bar[4]] == REPEAT_FAR).all()
    assert group_counts(g)["repeat_near"] == 0
    assert (repeat_groups(t.ids, t.steps, TOK, len(t)) == FIRST_SEGMENT).all()


def test_no_repeats_all_later_tokens_are_novel():
    # every bar a different set of intervals (and rhythm), so no two are equal up to transposition
    bars = [([(60, 0, 1), (60 + k + 1, 1, 1), (60 + 2 * k + 3, 2, 2)], 0) for k in range(8)]
    t = TOK.encode(piece(bars))
    g = repeat_groups(t.ids, t.steps, TOK, 16)
    assert (g[:17] == FIRST_SEGMENT).all() and (g[17:] == NOVEL).all()
    assert sum(group_counts(g).values()) == len(t)


def test_one_note_bars_and_drums():
    t = TOK.encode(piece([(A, 0), (ONE, 0), (B, 0), (ONE, 5)]))
    # one note is like any other of its length up to transposition: no repeat unless asked
    assert group_counts(repeat_groups(t.ids, t.steps, TOK, 2))["repeat_far"] == 0
    g = repeat_groups(t.ids, t.steps, TOK, 2, min_notes=1)
    assert (g[positions_of_bar(t, 3)] == REPEAT_FAR).all()
    # a drum key is a sound, not a pitch: it does not transpose with the notes
    same = TOK.encode(piece([(A, 0), (B, 0), (A, 3)], drums={0, 2}))
    g = repeat_groups(same.ids, same.steps, TOK, 2)
    assert (g[positions_of_bar(same, 2)] == REPEAT_FAR).all()
    moved = piece([(A, 0), (B, 0), (A, 3)], drums={0, 2})
    moved.pitch[moved.is_drum & (moved.start > 0)] += 3
    m = TOK.encode(moved)
    assert (repeat_groups(m.ids, m.steps, TOK, 2)[positions_of_bar(m, 2)] == NOVEL).all()


def test_bars_of_three_beats_and_bad_input():
    t = TOK.encode(piece([(A, 0), (B, 0), (A, 3)]))
    assert group_counts(repeat_groups(t.ids, t.steps, TOK, 2))["repeat_far"] > 0
    # cut every 3 beats, the 4-beat bars straddle the cuts: fewer repeats (here none), never false ones
    assert group_counts(repeat_groups(t.ids, t.steps, TOK, 2, beats_per_bar=3))["repeat_far"] == 0
    with pytest.raises(ValueError, match="differ in length"):
        repeat_groups(t.ids, t.steps[:-1], TOK, 2)
    with pytest.raises(ValueError, match="backwards"):
        repeat_groups(t.ids, t.steps[::-1], TOK, 2)


def test_a_chorale_repeats_its_first_phrase(bach_files):
    """bwv1.6 sings its opening phrase twice: repeated bars are found, far beyond a 64-token segment."""
    f = next(p for p in bach_files if p.name == "bwv1.6.mid")
    t = TOK.encode(f)
    c = group_counts(repeat_groups(t.ids, t.steps, TOK, 64))
    assert c["first_segment"] == 65 and sum(c.values()) == len(t)
    assert c["repeat_far"] > 0.15 * len(t) and c["novel"] > c["repeat_far"]


def test_merged_tokens_keep_the_groups_of_their_bars(bach_files):
    base = [TOK.encode(f) for f in bach_files[:6]]
    bpe = TOK.train_bpe(base, len(TOK) + 40)
    for t in base[:2]:
        m = bpe.apply_bpe(t)
        g_base = repeat_groups(t.ids, t.steps, TOK, 1)
        g_merged = repeat_groups(m.ids, m.steps, bpe, 1)
        # each merged token's group (novel or repeat) is its first base token's
        first = np.cumsum(bpe.lengths[m.ids]) - bpe.lengths[m.ids]
        assert np.array_equal(g_merged[1:] == NOVEL, g_base[first][1:] == NOVEL)


def test_groups_are_the_four_named():
    assert GROUPS == ("first_segment", "novel", "repeat_near", "repeat_far")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, bach_files):
    import shutil

    from midigen.data.prepare import prepare

    d = tmp_path_factory.mktemp("repeats")
    (d / "src").mkdir()
    for f in bach_files[:10]:
        shutil.copy(f, d / "src" / f.name)
    prepare([d / "src"], d / "prep", workers=0, progress=False, valid_fraction=0.3, test_fraction=0.0)
    return d / "prep"


def test_likelihood_by_repetition_group(prepared):
    """The loss split by group: per-token losses mapped back to their pieces and positions."""
    import torch

    from midigen.data import PreparedCorpus
    from midigen.evaluate import repeats_table
    from midigen.metrics import likelihood
    from midigen.model import build_model
    from midigen.train import default_model_config

    valid = PreparedCorpus(prepared, "valid")
    torch.manual_seed(0)
    model = build_model("gpt", default_model_config(valid.tokenizer, 32, n_layer=1, n_head=2, n_embd=16).to_dict())
    m = likelihood(model, valid, batch_size=2, seq_len=32, per_token=True, repeats=True)
    rep = m["repeats"]["groups"]
    assert list(rep) == list(GROUPS) and sum(g["tokens"] for g in rep.values()) == m["tokens"]
    assert np.isclose(sum(g["loss"] * g["tokens"] for g in rep.values() if g["tokens"]) / m["tokens"], m["loss"], rtol=1e-6)
    assert rep["repeat_far"]["tokens"] > 0 and rep["novel"]["tokens"] > 0
    # each target's piece and position: its id is the corpus's there, its group repeat_groups' there
    pieces, positions = m["token_pieces"], m["token_positions"]
    assert np.array_equal(m["token_targets"], np.asarray(valid.tokens)[valid.starts[pieces] + positions])
    groups = np.concatenate([repeat_groups(*valid.piece(i), valid.tokenizer, 32) for i in range(len(valid))])
    g = groups[valid.starts[pieces] + positions]
    for k, name in enumerate(GROUPS):
        assert rep[name]["tokens"] == int((g == k).sum())
        if rep[name]["tokens"]:
            assert np.isclose(rep[name]["loss"], m["token_losses"][g == k].mean(), rtol=1e-5)
    assert (m["token_segments"][g == FIRST_SEGMENT] == 0).all() and (m["token_segments"][g != FIRST_SEGMENT] > 0).all()
    table = repeats_table(m["repeats"], m["tokens"])
    assert "repeat_far" in table and "segments of 32 tokens" in table


def test_evaluate_repeats(prepared):
    from midigen import cli
    from midigen.assets import asset_path
    from midigen.evaluate import evaluate, format_table

    result = evaluate(asset_path("bach-gpt"), prepared, "valid", samples=0, max_batches=2, repeats=True, progress=False)
    rep = result["likelihood"]["repeats"]
    assert sum(g["tokens"] for g in rep["groups"].values()) == result["likelihood"]["tokens"] > 0
    assert "loss by repetition" in format_table(result) and "repeat_far" in format_table(result)
    assert "repeats" not in evaluate(asset_path("bach-gpt"), prepared, "valid", samples=0, max_batches=1,
                                     progress=False)["likelihood"]
    _, cfg = cli.parse(["evaluate", "--checkpoint", "c", "--data", "d", "--repeats", "--beats-per-bar", "3"])
    assert cfg["evaluate"].repeats is True and cfg["evaluate"].beats_per_bar == 3
