"""Batching strategies: exact batches on tiny hand-made corpora, and invariants (hypothesis)."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from midigen.data.batching import IGNORE_INDEX, Contiguous, PerSong, RandomWindows, make_batches
from midigen.data.corpus import PreparedCorpus
from midigen.encoding import Tokenizer

N = IGNORE_INDEX  # short name for the hand-written expected targets
LOCATIONS = ["disk", "ram", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # "cpu": a torch tensor


def piece_tokens(p: int, n: int) -> list[int]:
    """Piece p of n tokens: <sos> 10(p+1) 10(p+1)+1 ... <eos>  (e.g. piece 0 = 1 10 11 12 ... 2)."""
    return ([1] + [10 * (p + 1) + i for i in range(n - 2)] + [2])[:n]  # n < 2: a truncated piece


def write_corpus(root: Path, lengths, split: str = "train") -> Path:
    """The on-disk format of a prepared corpus, written by hand; steps = position in the split."""
    root.mkdir(parents=True, exist_ok=True)
    Tokenizer().save(root)
    (root / "manifest.json").write_text(json.dumps({"token_dtype": "uint16"}))
    pieces = [piece_tokens(p, n) for p, n in enumerate(lengths)]
    tokens = np.asarray([t for piece in pieces for t in piece], np.uint16)
    assert tokens.max(initial=0) < len(Tokenizer())
    tokens.tofile(root / f"{split}.tokens.bin")
    np.arange(len(tokens), dtype=np.int32).tofile(root / f"{split}.steps.bin")
    lengths = np.asarray(lengths, np.int64)
    index = np.stack([np.cumsum(lengths) - lengths, lengths], axis=1).astype(np.int64).reshape(-1, 2)
    np.save(root / f"{split}.index.npy", index)
    return root


@pytest.fixture
def corpus_7_4_10(tmp_path):
    return write_corpus(tmp_path / "c", [7, 4, 10])


def as_lists(batch):
    return {k: v.tolist() for k, v in batch.items()}


def check_dtypes(batch, B, L):
    for k in ("x", "y", "steps", "piece"):
        assert batch[k].dtype == torch.int64 and tuple(batch[k].shape) == (B, L), k
        assert batch[k].is_contiguous(), k
    assert batch["start"].dtype == torch.int64 and tuple(batch["start"].shape) == (B,)
    assert set(batch) <= {"x", "y", "steps", "piece", "start", "reset"}
    if "reset" in batch:
        assert batch["reset"].dtype == torch.bool and tuple(batch["reset"].shape) == (B,)


# ---------------------------------------------------------------- random windows
def test_random_windows_exact_when_only_one_window_fits(tmp_path):
    # 7 tokens, seq_len 6: the only window is the whole split.
    c = PreparedCorpus(write_corpus(tmp_path, [4, 3]))  # 1 10 11 2 | 1 20 2
    rw = RandomWindows(c, batch_size=2, seq_len=6)
    assert len(rw) == 1
    (batch,) = list(rw)
    check_dtypes(batch, 2, 6)
    assert as_lists(batch) == {
        "x": [[1, 10, 11, 2, 1, 20]] * 2,
        "y": [[10, 11, 2, 1, 20, 2]] * 2,
        "steps": [[0, 1, 2, 3, 4, 5]] * 2,
        "piece": [[0, 0, 0, 0, 1, 1]] * 2,
        "start": [0, 0],
    }


def test_random_windows_are_slices_of_the_flat_sequence(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10, location="ram")
    flat = np.asarray(c.tokens, np.int64)
    B, L = 4, 5
    rw = RandomWindows(c, B, L, seed=3, num_batches=50)
    assert len(rw) == 50
    starts = []
    for batch in rw:
        check_dtypes(batch, B, L)
        x, y, steps, piece = (batch[k].numpy() for k in ("x", "y", "steps", "piece"))
        for r in range(B):
            s = int(steps[r, 0])  # steps are positions in this test corpus
            starts.append(s)
            assert 0 <= s <= c.n_tokens - L - 1
            assert (x[r] == flat[s : s + L]).all() and (y[r] == flat[s + 1 : s + L + 1]).all()
            assert (steps[r] == np.arange(s, s + L)).all()
            assert (piece[r] == np.searchsorted(c.starts, np.arange(s, s + L), side="right") - 1).all()
            # <eos> separates pieces: the piece changes exactly after an <eos>, at a <sos>
            change = np.flatnonzero(np.diff(piece[r]))
            assert (x[r][change] == 2).all() and (x[r][change + 1] == 1).all()
            assert set(np.flatnonzero(x[r][:-1] == 2)) == set(change)
    assert set(starts) == set(range(c.n_tokens - L))  # uniform over [0, n - L - 1]: both ends reached


def test_random_windows_seeded(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    a = [as_lists(b) for b in RandomWindows(c, 3, 4, seed=1, num_batches=5)]
    b = [as_lists(b) for b in RandomWindows(c, 3, 4, seed=1, num_batches=5)]
    other = [as_lists(b) for b in RandomWindows(c, 3, 4, seed=2, num_batches=5)]
    assert a == b and a != other
    rw = RandomWindows(c, 3, 4, seed=1, num_batches=5)
    e0, e1 = [as_lists(b) for b in rw], [as_lists(b) for b in rw]
    assert e0 == a and e1 != e0  # each iter() is a new epoch
    rw.set_epoch(0)
    assert [as_lists(b) for b in rw] == a
    # the default epoch: n_tokens // (B * L) batches, at least one
    assert len(RandomWindows(c, 2, 2)) == 21 // 4 and len(RandomWindows(c, 8, 8)) == 1


def test_random_windows_infinite_and_errors(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    rw = RandomWindows(c, 2, 3, num_batches=2, infinite=True)
    it = iter(rw)
    got = [as_lists(next(it)) for _ in range(5)]
    rw2 = RandomWindows(c, 2, 3, num_batches=2)
    assert got[:4] == [as_lists(b) for b in rw2] + [as_lists(b) for b in rw2]
    with pytest.raises(TypeError):
        len(rw)
    with pytest.raises(ValueError, match="at least seq_len"):
        RandomWindows(c, 2, 21)
    with pytest.raises(ValueError, match="batch_size"):
        RandomWindows(c, 0, 3)


# ---------------------------------------------------------------- per song
def test_per_song_exact(corpus_7_4_10):
    # seq_len 6 -> windows of 7: piece 0 fits exactly, piece 1 (4) is padded, piece 2 (10) cropped.
    c = PreparedCorpus(corpus_7_4_10)
    ps = PerSong(c, batch_size=2, seq_len=6, shuffle=False)
    assert len(ps) == 2
    b0, b1 = list(ps)
    check_dtypes(b0, 2, 6)
    check_dtypes(b1, 1, 6)  # the last batch is short
    assert as_lists(b0) == {
        "x": [[1, 10, 11, 12, 13, 14], [1, 20, 21, 2, 0, 0]],
        "y": [[10, 11, 12, 13, 14, 2], [20, 21, 2, N, N, N]],
        "steps": [[0, 1, 2, 3, 4, 5], [7, 8, 9, 10, 0, 0]],
        "piece": [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, -1, -1]],
        "start": [0, 7],
    }
    assert as_lists(b1) == {
        "x": [[1, 30, 31, 32, 33, 34]],
        "y": [[30, 31, 32, 33, 34, 35]],
        "steps": [[11, 12, 13, 14, 15, 16]],
        "piece": [[2, 2, 2, 2, 2, 2]],
        "start": [11],
    }
    assert ps.padding_fraction() == pytest.approx(3 / 18)
    dl = PerSong(c, 2, 6, shuffle=False, drop_last=True)
    assert len(dl) == 1 and dl.padding_fraction() == pytest.approx(3 / 12)
    assert as_lists(next(iter(dl))) == as_lists(b0)


def test_per_song_shuffle_and_random_crop(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    flat = np.asarray(c.tokens, np.int64)
    ps = PerSong(c, 3, 6, seed=5, shuffle=True, random_crop=True)
    orders, offsets = set(), set()
    for _ in range(30):
        (batch,) = list(ps)
        x, y, steps, piece = (batch[k].numpy() for k in ("x", "y", "steps", "piece"))
        orders.add(tuple(piece[:, 0]))
        assert sorted(piece[:, 0]) == [0, 1, 2]
        for r, p in enumerate(piece[:, 0]):
            s, n = int(c.starts[p]), int(c.lengths[p])
            off = int(steps[r, 0]) - s
            m = min(n, 7)
            assert 0 <= off <= n - m and (off == 0 or n > 7)
            if p == 2:
                offsets.add(off)
            w = flat[s + off : s + off + m]
            assert (x[r, : m - 1] == w[:-1]).all() and (y[r, : m - 1] == w[1:]).all()
            assert (y[r, m - 1 :] == N).all() and (x[r, m:] == 0).all()
    assert len(orders) == 6 and offsets == {0, 1, 2, 3}
    ps.set_epoch(4)
    a = [as_lists(b) for b in ps]
    ps.set_epoch(4)
    assert [as_lists(b) for b in ps] == a


# ---------------------------------------------------------------- contiguous
def test_contiguous_exact_b2(corpus_7_4_10):
    # segments: piece 0 (7 tokens, 6 targets) 2, piece 1 (4) 1, piece 2 (10) 3.
    # Longest first: piece 2 -> row 0; piece 0 -> row 1; piece 1 -> row 1 (2 < 3 segments).
    c = PreparedCorpus(corpus_7_4_10)
    ct = Contiguous(c, batch_size=2, seq_len=3)
    assert ct.row_pieces() == [[2], [0, 1]] and len(ct) == 3
    got = [as_lists(b) for b in ct]
    for b in got:
        del b["steps"]
    assert got == [
        {"x": [[1, 30, 31], [1, 10, 11]], "y": [[30, 31, 32], [10, 11, 12]], "piece": [[2] * 3, [0] * 3], "start": [11, 0],
         "reset": [True, True]},
        {"x": [[32, 33, 34], [12, 13, 14]], "y": [[33, 34, 35], [13, 14, 2]], "piece": [[2] * 3, [0] * 3], "start": [14, 3],
         "reset": [False, False]},
        {"x": [[35, 36, 37], [1, 20, 21]], "y": [[36, 37, 2], [20, 21, 2]], "piece": [[2] * 3, [1] * 3], "start": [17, 7],
         "reset": [False, True]},
    ]
    assert ct.padding_fraction() == 0.0


def test_contiguous_exact_with_padded_last_segments(corpus_7_4_10):
    # seq_len 4: piece 0 -> 2 segments (6 targets), piece 1 -> 1 (3), piece 2 -> 3 (9).
    c = PreparedCorpus(corpus_7_4_10)
    ct = Contiguous(c, batch_size=2, seq_len=4)
    got = [as_lists(b) for b in ct]
    assert got == [
        {
            "x": [[1, 30, 31, 32], [1, 10, 11, 12]],
            "y": [[30, 31, 32, 33], [10, 11, 12, 13]],
            "steps": [[11, 12, 13, 14], [0, 1, 2, 3]],
            "piece": [[2, 2, 2, 2], [0, 0, 0, 0]],
            "start": [11, 0],
            "reset": [True, True],
        },
        {
            "x": [[33, 34, 35, 36], [13, 14, 2, 0]],
            "y": [[34, 35, 36, 37], [14, 2, N, N]],
            "steps": [[15, 16, 17, 18], [4, 5, 6, 0]],
            "piece": [[2, 2, 2, 2], [0, 0, 0, -1]],
            "start": [15, 4],
            "reset": [False, False],
        },
        {
            "x": [[37, 2, 0, 0], [1, 20, 21, 2]],
            "y": [[2, N, N, N], [20, 21, 2, N]],
            "steps": [[19, 20, 0, 0], [7, 8, 9, 10]],
            "piece": [[2, 2, -1, -1], [1, 1, 1, 1]],
            "start": [19, 7],
            "reset": [False, True],
        },
    ]
    assert ct.padding_fraction() == pytest.approx(6 / 24)


def test_contiguous_exact_b1(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    got = [as_lists(b) for b in Contiguous(c, batch_size=1, seq_len=3)]
    assert [(b["x"], b["y"], b["reset"], b["piece"][0][0]) for b in got] == [
        ([[1, 10, 11]], [[10, 11, 12]], [True], 0),
        ([[12, 13, 14]], [[13, 14, 2]], [False], 0),
        ([[1, 20, 21]], [[20, 21, 2]], [True], 1),
        ([[1, 30, 31]], [[30, 31, 32]], [True], 2),
        ([[32, 33, 34]], [[33, 34, 35]], [False], 2),
        ([[35, 36, 37]], [[36, 37, 2]], [False], 2),
    ]


def test_contiguous_exact_more_rows_than_pieces(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    ct = Contiguous(c, batch_size=5, seq_len=3)
    assert ct.row_pieces() == [[2], [0], [1], [], []]
    P = [0, 0, 0]
    got = [as_lists(b) for b in ct]
    assert [(b["x"], b["y"], b["reset"]) for b in got] == [
        (
            [[1, 30, 31], [1, 10, 11], [1, 20, 21], P, P],
            [[30, 31, 32], [10, 11, 12], [20, 21, 2], [N] * 3, [N] * 3],
            [True] * 5,
        ),
        (
            [[32, 33, 34], [12, 13, 14], P, P, P],
            [[33, 34, 35], [13, 14, 2], [N] * 3, [N] * 3, [N] * 3],
            [False, False, True, False, False],
        ),
        (
            [[35, 36, 37], P, P, P, P],
            [[36, 37, 2], [N] * 3, [N] * 3, [N] * 3, [N] * 3],
            [False, True, False, False, False],
        ),
    ]
    assert [b["start"] for b in got] == [[11, 0, 7, -1, -1], [14, 3, -1, -1, -1], [17, -1, -1, -1, -1]]
    assert [b["piece"] for b in got] == [
        [[2] * 3, [0] * 3, [1] * 3, [-1] * 3, [-1] * 3],
        [[2] * 3, [0] * 3, [-1] * 3, [-1] * 3, [-1] * 3],
        [[2] * 3, [-1] * 3, [-1] * 3, [-1] * 3, [-1] * 3],
    ]
    assert ct.padding_fraction() == pytest.approx(1 - 18 / 45)


def check_contiguous_epoch(c: PreparedCorpus, ct: Contiguous):
    """Every target of every piece exactly once, in order, rows never mixing or splitting pieces."""
    flat = np.asarray(c.tokens, np.int64)
    starts, lengths = c.starts, c.lengths
    B, L = ct.batch_size, ct.seq_len
    rows = ct.row_pieces()
    seen = {p: [] for p in range(len(c))}  # target positions of each piece, in the order seen
    row_stream = [[] for _ in range(B)]  # the piece (or -1) of each segment of each row
    n_batches = len(ct)
    batches = list(ct)
    assert len(batches) == n_batches
    for t, batch in enumerate(batches):
        check_dtypes(batch, B, L)
        x, y, steps, piece, reset = (batch[k].numpy() for k in ("x", "y", "steps", "piece", "reset"))
        for r in range(B):
            ps = set(piece[r].tolist()) - {-1}
            assert len(ps) <= 1  # a segment never mixes two pieces
            p = ps.pop() if ps else -1
            xv = piece[r] >= 0
            assert (xv == (x[r] != 0)).all() and (xv[:-1] >= xv[1:]).all()  # right padding only
            assert (y[r][~xv] == N).all() and (steps[r][~xv] == 0).all()
            new = (p == -1 and (not row_stream[r] or row_stream[r][-1] != -1)) or (p >= 0 and steps[r, 0] == starts[p])
            assert bool(reset[r]) == (t == 0 or new)
            row_stream[r].append(p)
            if p < 0:
                assert (y[r] == N).all()
                continue
            pos = steps[r][xv]  # positions in the split, = steps in these corpora
            assert (np.diff(pos) == 1).all() and starts[p] <= pos[0] and pos[-1] < starts[p] + lengths[p]
            assert (x[r][xv] == flat[pos]).all()
            has_target = y[r] != N
            tpos = steps[r][has_target] + 1
            assert (y[r][has_target] == flat[tpos]).all()
            assert has_target.sum() == min(L, starts[p] + lengths[p] - pos[0] - 1)
            seen[p].extend(tpos.tolist())
    for p in range(len(c)):
        n = int(lengths[p])
        assert seen[p] == list(range(starts[p] + 1, starts[p] + n)), p  # each target once, in order
    for r in range(B):  # each row plays its assigned pieces, whole, one after another, then pads
        played = [p for i, p in enumerate(row_stream[r]) if p >= 0 and (i == 0 or row_stream[r][i - 1] != p)]
        assert played == [p for p in rows[r] if lengths[p] >= 2]
        k = len([p for p in row_stream[r] if p >= 0])
        assert all(p == -1 for p in row_stream[r][k:])
    assert sorted(p for row in rows for p in row) == [p for p in range(len(c)) if lengths[p] >= 2]
    nseg = [-(-(int(n) - 1) // L) if n >= 2 else 0 for n in lengths]
    loads = [sum(nseg[p] for p in row) for row in rows]
    assert n_batches == max(loads, default=0)
    # greedy longest-first balance: the longest row exceeds the shortest by at most one piece
    if loads:
        assert max(loads) - min(loads) <= max(nseg, default=0)
    total_targets = sum(max(int(n) - 1, 0) for n in lengths)
    expected = 1 - total_targets / (n_batches * B * L) if n_batches else 0.0
    assert ct.padding_fraction(ct.epoch - 1) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=8),  # 0 and 1: no target
    B=st.integers(1, 6),
    L=st.integers(1, 8),
    shuffle=st.booleans(),
    seed=st.integers(0, 3),
)
def test_contiguous_properties(lengths, B, L, shuffle, seed):
    with tempfile.TemporaryDirectory() as d:
        c = PreparedCorpus(write_corpus(Path(d), lengths), location="ram")
        ct = Contiguous(c, B, L, seed=seed, shuffle=shuffle)
        check_contiguous_epoch(c, ct)
        check_contiguous_epoch(c, ct)  # the next epoch too (another order when shuffled)


def test_contiguous_shuffle_changes_play_order(tmp_path):
    c = PreparedCorpus(write_corpus(tmp_path, [5] * 8))
    ct = Contiguous(c, 2, 4, seed=0, shuffle=True)
    orders = {tuple(map(tuple, ct.row_pieces(e))) for e in range(10)}
    assert len(orders) > 1
    assert Contiguous(c, 2, 4).row_pieces() == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_short_pieces_are_skipped(tmp_path):
    c = PreparedCorpus(write_corpus(tmp_path, [3, 0, 4, 1]))  # pieces 1 and 3 have no target
    ct = Contiguous(c, 2, 2)
    check_contiguous_epoch(c, ct)
    batches = list(PerSong(c, 4, 3, shuffle=False))
    assert len(batches) == 1 and batches[0]["piece"][:, 0].tolist() == [0, 2]


# ---------------------------------------------------------------- all strategies
CASES = [
    ("random_windows", dict(seed=4, num_batches=6)),
    ("per_song", dict(seed=4, random_crop=True)),
    ("per_song", dict(shuffle=False)),
    ("contiguous", dict(seed=4, shuffle=True)),
    ("contiguous", dict()),
]


@pytest.mark.parametrize("group", [None, 1, 2], ids=["one-group", "group-of-1", "groups-of-2"])
@pytest.mark.parametrize("strategy,kw", CASES)
def test_same_batches_from_every_location(tmp_path, monkeypatch, strategy, kw, group):
    """On a torch device batches are gathered a group at a time (views of their rows): the
    groups' edges must not show."""
    if group is not None:
        import midigen.data.gather as B

        monkeypatch.setattr(B, "GROUP_POSITIONS", group * 3 * 5)  # `group` batches of 3 x (4 + 1)
    root = write_corpus(tmp_path, [7, 4, 10, 3, 12, 6])
    results = {}
    for loc in LOCATIONS:
        c = PreparedCorpus(root, location=loc)
        bs = make_batches(c, strategy, 3, 4, **kw)
        epochs = []
        for _ in range(2):
            batches = list(bs)
            for b in batches:
                assert all(v.device.type == ("cuda" if loc == "cuda" else "cpu") for v in b.values())
                check_dtypes(b, len(b["x"]), 4)
            epochs.append([as_lists(b) for b in batches])
        results[loc] = epochs
    for loc in LOCATIONS[1:]:
        assert results[loc] == results["disk"], loc


@pytest.mark.parametrize("strategy,kw", CASES)
@pytest.mark.parametrize("loc", LOCATIONS)
def test_start_is_where_each_row_lies_in_the_corpus(tmp_path, strategy, kw, loc):
    """``corpus.tokens[start[r] + j] == x[r, j]`` (and the steps likewise) wherever there is input;
    -1 exactly for the rows of padding (`Contiguous`'s rows that ran out of pieces)."""
    root = write_corpus(tmp_path, [7, 4, 10, 3, 12, 6, 0, 1])
    c = PreparedCorpus(root, location=loc)
    flat = np.asarray(PreparedCorpus(root, location="ram").tokens, np.int64)
    rows = padding = 0
    for L in (1, 4, 9):
        for batch in make_batches(c, strategy, 3, L, **kw):
            x, steps, piece, start = (batch[k].cpu().numpy() for k in ("x", "steps", "piece", "start"))
            valid = piece >= 0
            assert np.array_equal(start >= 0, valid[:, 0])
            for r in range(len(x)):
                if start[r] < 0:
                    padding += 1
                    continue
                n = int(valid[r].sum())
                assert valid[r, :n].all() and start[r] + n <= len(flat)  # (right padding only)
                assert np.array_equal(flat[start[r] : start[r] + n], x[r, :n])
                assert np.array_equal(np.arange(start[r], start[r] + n), steps[r, :n])  # (steps = positions here)
                rows += 1
    assert rows > 0 and (padding > 0) == (strategy == "contiguous")


def test_device_argument_moves_batches(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10, location="cpu")  # tokens are a torch tensor
    b = next(iter(PerSong(c, 2, 4, device="cpu")))
    assert b["x"].device.type == "cpu"
    if torch.cuda.is_available():
        c = PreparedCorpus(corpus_7_4_10, location="ram")
        b = next(iter(Contiguous(c, 2, 4, device="cuda", pin_memory=True)))
        assert all(v.device.type == "cuda" for v in b.values())


def test_make_batches(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    assert isinstance(make_batches(c, "random_windows", 2, 3), RandomWindows)
    assert isinstance(make_batches(c, "per_song", 2, 3, shuffle=False), PerSong)
    assert isinstance(make_batches(c, "contiguous", 2, 3), Contiguous)
    with pytest.raises(ValueError, match="unknown batching strategy 'nope'"):
        make_batches(c, "nope", 2, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA fallback")
def test_pin_memory_without_cuda_warns_and_still_works(corpus_7_4_10):
    c = PreparedCorpus(corpus_7_4_10)
    with pytest.warns(UserWarning, match="pin_memory"):
        ps = PerSong(c, 2, 4, pin_memory=True)
    assert not ps.pin_memory and len(list(ps)) == 2


def test_rows_crossing_counts_rows_that_run_into_another_piece():
    from midigen.data.batching import rows_crossing

    piece = torch.tensor([[0, 0, 0, 0],     # one piece
                          [1, 1, 2, 2],     # runs into piece 2
                          [3, 3, -1, -1],   # padding after its piece: not another piece
                          [-1, 4, 4, 5]])   # padding, then two pieces
    assert rows_crossing({"piece": piece}) == 2
    assert rows_crossing({"piece": piece[:1]}) == 0
