"""Augmentation on the fly (midigen.data.augment): a transposed batch is the batch of the corpus
prepared from the transposed scores, on real chorales and on band arrangements with drums."""

import copy
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from midigen.data.augment import Augmenter
from midigen.data.batching import Contiguous, PerSong, RandomWindows
from midigen.data.corpus import PreparedCorpus
from midigen.data.prepare import prepare
from midigen.encoding import EncodingConfig
from midigen.encoding.vocab import K_NOTE, K_PART, K_TEMPO
from midigen.midi import read_midi


def _prepare(root, files, encoding=None, **kw):
    src = root / "src"
    src.mkdir(parents=True)
    for f in files:
        shutil.copy(f, src / f.name)
    prepare([src], root / "prepared", encoding, workers=0, progress=False, valid_fraction=0.0, test_fraction=0.0, **kw)
    return root / "prepared"


@pytest.fixture(scope="module")
def bach(tmp_path_factory, bach_files):
    return _prepare(tmp_path_factory.mktemp("bach"), bach_files[:12])


@pytest.fixture(scope="module")
def band(tmp_path_factory, bach_files, shared_corpus):
    """Four Lakh arrangements (drums, bass, tempo changes) and three chorales."""
    return _prepare(tmp_path_factory.mktemp("band"), sorted((shared_corpus / "multitrack").glob("*.mid")) + bach_files[:3])


def moved(score, semitones: int, tempo_bins: int, bins_per_octave: int):
    """The score played ``semitones`` higher (drums stay) and ``tempo_bins`` tempo bins faster."""
    s = score.copy()
    s.pitch = np.where(s.is_drum, s.pitch, s.pitch + semitones).astype(s.pitch.dtype)
    ticks, qpm = s.tempo_ticks, s.tempo_qpm
    if len(ticks) == 0 or ticks[0] > 0:  # MIDI's 120 qpm before the first tempo event moves too
        ticks, qpm = np.concatenate([[0], ticks]), np.concatenate([[120.0], qpm])
    s.tempo_ticks, s.tempo_qpm = ticks.astype(np.int64), qpm * 2.0 ** (tempo_bins / bins_per_octave)
    return s


def moved_corpus(corpus, pitch, tempo):
    """The same corpus (in RAM) with every piece encoded again from its moved score."""
    tok = corpus.tokenizer
    ids = []
    for i, name in enumerate(corpus.names):
        score = moved(read_midi(name), int(pitch[i]), int(tempo[i]), tok.config.tempo_bins_per_octave)
        ids.append(tok.encode(score).ids)
        assert len(ids[-1]) == corpus.lengths[i], name
    out = copy.copy(corpus)
    out.tokens = np.concatenate(ids)
    return out


BATCHERS = [
    lambda c: RandomWindows(c, 8, 24, seed=1, num_batches=12),
    lambda c: RandomWindows(c, 4, 5, seed=2, num_batches=40),  # short rows: inside one step (a chord), drums from before the row
    lambda c: PerSong(c, 4, 40, seed=3, random_crop=True),
    lambda c: PerSong(c, 4, 4000, seed=3),  # whole pieces, padded
    lambda c: Contiguous(c, 3, 16, seed=4),
]


def check_equals_moved_corpus(path, transpose, tempo_shift, epoch=3):
    corpus = PreparedCorpus(path, location="ram")
    aug = Augmenter(corpus, transpose, tempo_shift, seed=7)
    pitch, tempo = aug.shifts(epoch)
    assert np.any(pitch != 0) and (tempo_shift == 0 or np.any(tempo != 0))
    expected = moved_corpus(corpus, pitch, tempo)
    for make in BATCHERS:
        got, want = make(corpus), make(expected)
        got.set_epoch(5), want.set_epoch(5)
        for b, e in zip(got, want, strict=True):
            a = aug(b, epoch)
            for k in e:
                assert torch.equal(a[k], e[k]), (make(corpus), k)
            assert torch.equal(a["steps"], b["steps"]) and a["piece"] is b["piece"]
    counts = aug.take_counts()
    assert counts["notes_shifted"] > 0 and counts["notes_dropped"] == 0 and counts["tempo_clipped"] == 0
    return corpus, aug


def test_transposed_batches_equal_the_transposed_chorales(bach):
    check_equals_moved_corpus(bach, 6, 2)


def test_transposed_batches_equal_the_transposed_band_arrangements_drums_untouched(band):
    corpus, aug = check_equals_moved_corpus(band, 5, 2)
    assert len(aug._switches) > 100  # drums and pitched instruments alternate: the test means something
    # the drum notes of a batch are exactly those of the original
    batch = next(iter(RandomWindows(corpus, 16, 64, seed=9)))
    out = aug.apply(batch, np.full(len(corpus), 3))
    kind = corpus.tokenizer.table.kind[batch["x"].numpy()]
    moved_ = out["x"] != batch["x"]
    assert np.all(kind[moved_.numpy()] == K_NOTE)
    assert (out["x"][moved_] - batch["x"][moved_] == 3).all()
    drum_notes = (kind == K_NOTE) & ~moved_.numpy()
    assert drum_notes.sum() > 0, "no drum note in the batch"


def test_a_corpus_held_as_a_torch_tensor_gives_the_same_batches(band):
    ram, tensor = PreparedCorpus(band, location="ram"), PreparedCorpus(band, location="cpu")  # (as on a GPU)
    a, b = Augmenter(ram, 6, 2, seed=3), Augmenter(tensor, 6, 2, seed=3)
    for u, v in zip(RandomWindows(ram, 8, 24, seed=1, num_batches=6), RandomWindows(tensor, 8, 24, seed=1, num_batches=6), strict=True):
        au, av = a(u, 2), b(v, 2)
        assert all(torch.equal(au[k], av[k]) for k in au) and not torch.equal(au["x"], u["x"])


def test_instrument_free_encoding_moves_every_note(tmp_path, shared_corpus):
    path = _prepare(tmp_path, sorted((shared_corpus / "multitrack").glob("*.mid"))[:2], EncodingConfig.blog())
    corpus, aug = check_equals_moved_corpus(path, 4, 0)
    assert len(aug._switches) == 0
    with pytest.raises(ValueError, match="tempo_shift needs tempo tokens"):
        Augmenter(corpus, 4, tempo_shift=1)


def test_seeded_same_seed_same_shifts_other_seed_or_epoch_others(bach):
    corpus = PreparedCorpus(bach)
    a, b, c = Augmenter(corpus, 6, 2, seed=1), Augmenter(corpus, 6, 2, seed=1), Augmenter(corpus, 6, 2, seed=2)
    for e in range(3):
        assert all(np.array_equal(u, v) for u, v in zip(a.shifts(e), b.shifts(e), strict=True))
    assert not np.array_equal(a.shifts(0)[0], c.shifts(0)[0])
    assert not np.array_equal(a.shifts(0)[0], a.shifts(1)[0])
    pitch, tempo = a.shifts(0)
    assert pitch.min() >= -6 and pitch.max() <= 6 and tempo.min() >= -2 and tempo.max() <= 2
    batch = next(iter(RandomWindows(corpus, 4, 32, seed=0)))
    assert torch.equal(a(batch, 0)["x"], b(batch, 0)["x"])
    assert torch.equal(Augmenter(corpus, 0, 0).apply(batch, np.zeros(len(corpus)))["x"], batch["x"])


@settings(max_examples=25, deadline=None)
@given(transpose=st.integers(0, 30), epoch=st.integers(0, 1000), seed=st.integers(0, 2**31))
def test_limited_shifts_never_leave_the_pitch_range(narrow, transpose, epoch, seed):
    tok = narrow.tokenizer
    aug = Augmenter(narrow, transpose, 0, seed=seed)
    pitch, _ = aug.shifts(epoch)
    assert np.all((aug.shift_low <= pitch) & (pitch <= aug.shift_high))
    assert np.all((-transpose <= aug.shift_low) & (aug.shift_low <= 0) & (0 <= aug.shift_high) & (aug.shift_high <= transpose))
    if transpose >= 12:
        assert aug.pieces_limited > 0
    batch = next(iter(PerSong(narrow, len(narrow), 4000, shuffle=False)))  # every piece, whole
    out = aug(batch, epoch)
    x, x0 = out["x"].numpy(), batch["x"].numpy()
    kind = tok.table.kind
    assert np.array_equal(kind[x], kind[x0])  # a note stays a note: none left the range
    note = kind[x0] == K_NOTE
    assert np.array_equal((x - x0)[note], pitch[batch["piece"].numpy()][note])  # each by its piece's shift
    counts = aug.take_counts()
    assert counts["shifts_limited"] == aug.pieces_limited and counts["notes_dropped"] == 0


@pytest.fixture(scope="module")
def narrow(tmp_path_factory, bach_files):
    """Chorales in a narrow pitch range (C3..C5), so that large shifts must be limited."""
    path = _prepare(tmp_path_factory.mktemp("narrow"), bach_files[:12], EncodingConfig(min_pitch=48, max_pitch=72))
    return PreparedCorpus(path)


def test_tempo_is_clipped_to_the_bin_range_and_counted(bach):
    corpus = PreparedCorpus(bach)
    aug = Augmenter(corpus, 0, 1000)
    batch = next(iter(PerSong(corpus, 4, 64, shuffle=False)))
    out = aug.apply(batch, np.zeros(len(corpus), np.int64), np.full(len(corpus), 1000))
    tok = corpus.tokenizer
    tempo = tok.table.kind[batch["x"].numpy()] == K_TEMPO
    assert tempo.sum() >= 4
    assert (out["x"].numpy()[tempo] == tok.table.tempo_offset + len(tok.config.tempo_values()) - 1).all()
    assert aug.take_counts()["tempo_clipped"] == tempo.sum()


def test_bpe_corpus_is_refused(tmp_path, bach_files):
    path = _prepare(tmp_path, bach_files[:8], bpe_vocab=500)
    with pytest.raises(ValueError, match="augmentation needs a base-token corpus; prepare without --bpe-vocab"):
        Augmenter(PreparedCorpus(path), transpose=6)


PARTS = EncodingConfig(parts=True, velocity_bins=16)


@pytest.fixture(scope="module")
def band_parts(tmp_path_factory, bach_files, shared_corpus):
    """The band arrangements and chorales with part and velocity tokens: a drum part is found from
    its declaration (``drums p3``), not from the part token before each of its notes."""
    files = sorted((shared_corpus / "multitrack").glob("*.mid")) + bach_files[:3]
    return _prepare(tmp_path_factory.mktemp("band_parts"), files, PARTS)


def test_with_parts_and_velocity_transposed_batches_equal_the_transposed_scores(band_parts):
    corpus, aug = check_equals_moved_corpus(band_parts, 5, 2)
    assert len(aug._switches) > 100  # drum parts and pitched parts alternate
    tok = corpus.tokenizer
    assert tok.config.parts and (tok.table.kind[np.asarray(corpus.tokens)] == K_PART).sum() > 1000


def test_with_parts_the_chorales_move_alike(tmp_path, bach_files):
    check_equals_moved_corpus(_prepare(tmp_path, bach_files[:8], PARTS), 6, 1)


def test_the_scan_does_not_depend_on_its_chunks(band_parts, monkeypatch):
    """Declarations and their part tokens straddling chunk boundaries give the same drum context."""
    import midigen.data.augment as augment

    corpus = PreparedCorpus(band_parts, location="ram")
    whole = Augmenter(corpus, 6)
    for chunk in (7, 64, 1001):
        monkeypatch.setattr(augment, "SCAN_CHUNK", chunk)
        small = Augmenter(corpus, 6)
        assert np.array_equal(small._switches, whole._switches), chunk
        assert np.array_equal(small.shift_low, whole.shift_low) and np.array_equal(small.shift_high, whole.shift_high)


def test_bad_ranges_are_refused(bach):
    for kw in ({"transpose": -1}, {"tempo_shift": 1.5}, {"transpose": True}):
        with pytest.raises(ValueError, match="must be an integer >= 0"):
            Augmenter(PreparedCorpus(bach), **kw)

