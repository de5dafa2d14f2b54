"""Metrics: how well a model predicts held-out music, and how its own music compares.

The numbers behind `midigen evaluate` (`midigen.evaluate`) and the trainer's validation loss
(`midigen.train`); this module imports neither.

Two kinds of numbers (the blog's "Evaluation" section):

* **Likelihood** on a split: loss (nats per token), perplexity, bits per token and bits per
  *note* (the same total information divided by the number of notes, which compares across
  encodings and BPE vocabularies).
* **Music statistics** of generated pieces against the same statistics of the split, per piece
  and as distributions, with definitions from MusPy and Yang & Lerch (2020), on the step grid:

  ========================  ==================================================================
  pitch_range               highest minus lowest pitch (semitones)
  pitch_classes_used        number of distinct pitch classes
  pitch_class_entropy       Shannon entropy (bits) of the pitch-class histogram
  polyphony                 mean number of pitches sounding, over steps where any is sounding (*)
  polyphony_sd              its standard deviation over those steps: how steady the number of voices sounding is (*)
  polyphony_rate            fraction of sounding steps with two or more pitches (*)
  scale_consistency         largest fraction of notes inside one major or minor scale
  groove_consistency        1 - mean Hamming distance of consecutive bars' onset patterns
  empty_beat_rate           fraction of beats in which no note starts
  note_density              notes per beat
  duration_hist             histogram of note durations (steps)
  ioi_hist                  histogram of inter-onset intervals (steps between onsets)
  ========================  ==================================================================

  (*) Over the steps before the last onset (of a piece with more than one): from it on, a
  piece cut at a number of tokens (a continuation as long as a real one) lets its voices fall
  silent one by one, where the real piece ends on one chord; counting that tail would read a
  cut as unsteady voices.

  Drum notes are left out of the pitch statistics. Each scalar statistic is compared by the
  overlapping area (OA) of the two sets' kernel density estimates (1 = identical, 0 = disjoint)
  and their KL divergence; histogram statistics by the OA of the pooled histograms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .encoding import KIND_NAMES
from .encoding.quantise import ticks_to_steps
from .midi import Score
from .repeats import GROUPS, repeat_groups

if TYPE_CHECKING:
    import torch
    from numpy.typing import ArrayLike

    from .data import PreparedCorpus
    from .model import GPT

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
SCALAR_STATS = (
    "pitch_range", "pitch_classes_used", "pitch_class_entropy", "polyphony", "polyphony_sd", "polyphony_rate",
    "scale_consistency", "groove_consistency", "empty_beat_rate", "note_density",
)
HIST_STATS = ("duration_hist", "ioi_hist")


@dataclass
class Grid:
    """A score's notes on the step grid (drums excluded from pitch statistics)."""

    pitch: np.ndarray
    onset: np.ndarray
    duration: np.ndarray
    is_drum: np.ndarray
    steps_per_beat: int
    beats_per_bar: int

    @classmethod
    def from_score(cls, score: Score, steps_per_beat: int = 4, beats_per_bar: int | None = None,
                   max_duration: int = 64) -> Grid:
        onset = ticks_to_steps(score.start, score.ticks_per_quarter, steps_per_beat)
        end = ticks_to_steps(score.end, score.ticks_per_quarter, steps_per_beat)
        if beats_per_bar is None:
            beats_per_bar = int(score.ts_numerator[0] * 4 // score.ts_denominator[0]) if len(score.ts_numerator) else 4
        return cls(score.pitch.astype(np.int64), onset, np.clip(end - onset, 1, max_duration),
                   score.is_drum.copy(), steps_per_beat, max(1, beats_per_bar))


def music_statistics(score: Score, steps_per_beat: int = 4, beats_per_bar: int | None = None) -> dict:
    """All statistics of one piece (see the module docstring)."""
    g = Grid.from_score(score, steps_per_beat, beats_per_bar)
    pitched = ~g.is_drum
    p, on, du = g.pitch[pitched], g.onset[pitched], g.duration[pitched]
    out: dict = {}
    if len(p):
        out["pitch_range"] = float(p.max() - p.min())
        pc = np.bincount(p % 12, minlength=12)
        out["pitch_classes_used"] = float(np.count_nonzero(pc))
        prob = pc[pc > 0] / pc.sum()
        out["pitch_class_entropy"] = float(-(prob * np.log2(prob)).sum())
        # pitches sounding per step: +1 at onset, -1 at end (a difference array, no loop)
        length = int(on.max()) if on.max() > on.min() else int((on + du).max())  # to the last onset (*)
        delta = np.zeros(length + 1, np.int64)
        np.add.at(delta, on, 1)
        np.add.at(delta, np.minimum(on + du, length), -1)
        sounding = np.cumsum(delta)[:length]
        active = sounding > 0
        out["polyphony"] = float(sounding[active].mean()) if active.any() else 0.0
        out["polyphony_sd"] = float(sounding[active].std()) if active.any() else 0.0
        out["polyphony_rate"] = float((sounding >= 2).sum() / max(active.sum(), 1))
        scales = [(np.isin(p % 12, (s + k) % 12)).mean() for s in (MAJOR, MINOR) for k in range(12)]
        out["scale_consistency"] = float(max(scales))
    else:
        for k in ("pitch_range", "pitch_classes_used", "pitch_class_entropy", "polyphony", "polyphony_sd",
                  "polyphony_rate", "scale_consistency"):
            out[k] = float("nan")
    onsets = g.onset
    n_beats = int(max((g.onset + g.duration).max(initial=0), 1) + g.steps_per_beat - 1) // g.steps_per_beat
    n_beats = max(n_beats, 1)
    beat_has_onset = np.zeros(n_beats, bool)
    beat_has_onset[np.minimum(onsets // g.steps_per_beat, n_beats - 1)] = True
    out["empty_beat_rate"] = float(1.0 - beat_has_onset.mean())
    out["note_density"] = float(len(g.pitch) / n_beats)
    bar = g.steps_per_beat * g.beats_per_bar
    n_bars = max(1, -(-n_beats * g.steps_per_beat // bar))
    pattern = np.zeros((n_bars, bar), bool)
    pattern[onsets // bar, onsets % bar] = True
    if n_bars > 1:
        out["groove_consistency"] = float(1.0 - (pattern[1:] != pattern[:-1]).mean())
    else:
        out["groove_consistency"] = float("nan")
    out["duration_hist"] = np.bincount(np.clip(g.duration, 1, 64), minlength=65)[1:].tolist()
    uniq = np.unique(onsets)
    ioi = np.diff(uniq)
    out["ioi_hist"] = np.bincount(np.clip(ioi, 1, 64), minlength=65)[1:].tolist() if len(ioi) else [0] * 64
    return out


def overlap_and_kl(a: ArrayLike, b: ArrayLike, grid: int = 512) -> tuple[float, float]:
    """Overlapping area and KL(a || b) of two samples' densities: Gaussian kernel density
    estimates on one shared grid, with one bandwidth for both: Silverman's rule on the two samples'
    spreads within themselves (interquartile ranges, or standard deviations where most values are
    equal, as the chorales' polyphony is 4.0), at least 1/100 of the pooled range.

    Kernels, not a histogram: with the few dozen pieces an evaluation has, a 20-bin histogram
    splits even two samples of the same music apart (the valid and test chorales overlapped
    0.32-0.93 by it; see benchmarks/RESULTS.md), so it could not say whether generated music
    matches. One bandwidth, not one per sample: a sample whose values are nearly all equal would
    otherwise get a narrow kernel and its partner a wide one, and two samples of the same
    distribution would overlap little.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    pooled = np.concatenate([a, b])
    lo, hi = pooled.min(), pooled.max()
    if hi == lo:
        return 1.0, 0.0

    def spread(x: np.ndarray) -> float:  # robust: the interquartile range, else the standard deviation
        q75, q25 = np.percentile(x, [75, 25])
        return (q75 - q25) / 1.34 if q75 > q25 else float(x.std())

    within = np.sqrt((len(a) * spread(a) ** 2 + len(b) * spread(b) ** 2) / len(pooled))  # (not the gap between them)
    h = max(0.9 * within * len(pooled) ** -0.2, (hi - lo) / 100)
    xs = np.linspace(lo - 4 * h, hi + 4 * h, grid)

    def density(x: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((xs[:, None] - x[None, :]) / h) ** 2).sum(1)

    return _oa_kl(density(a), density(b))


def _oa_kl(pa: ArrayLike, pb: ArrayLike, eps: float = 1e-6) -> tuple[float, float]:
    pa = np.asarray(pa, float) / max(np.sum(pa), 1e-12)
    pb = np.asarray(pb, float) / max(np.sum(pb), 1e-12)
    oa = float(np.minimum(pa, pb).sum())
    qa, qb = pa + eps, pb + eps
    qa, qb = qa / qa.sum(), qb / qb.sum()
    return oa, float((qa * np.log(qa / qb)).sum())


def compare(generated: list[dict], reference: list[dict]) -> dict:
    """Per statistic: mean of each set, overlapping area and KL divergence."""
    out = {}
    for k in SCALAR_STATS:
        ga = np.array([s[k] for s in generated], float)
        ra = np.array([s[k] for s in reference], float)
        oa, kl = overlap_and_kl(ga, ra)
        out[k] = {"generated": float(np.nanmean(ga)) if np.isfinite(ga).any() else float("nan"),
                  "data": float(np.nanmean(ra)) if np.isfinite(ra).any() else float("nan"),
                  "overlap": oa, "kl": kl}
    for k in HIST_STATS:
        gh = np.sum([s[k] for s in generated], axis=0)
        rh = np.sum([s[k] for s in reference], axis=0)
        oa, kl = _oa_kl(gh, rh)
        mean = lambda h: float((np.arange(1, len(h) + 1) * h).sum() / max(h.sum(), 1))  # noqa: E731
        out[k] = {"generated": mean(gh), "data": mean(rh), "overlap": oa, "kl": kl}
    return out


def likelihood(model: GPT, corpus: PreparedCorpus, batch_size: int = 8, seq_len: int | None = None,
               max_batches: int | None = None, device: str | torch.device = "cpu", per_token: bool = False,
               repeats: bool = False, beats_per_bar: int = 4) -> dict:
    """Loss, perplexity, bits per token and bits per note of ``model`` on a `PreparedCorpus` split.

    Every token of the split is scored once, piece by piece (the ``contiguous`` batcher), so a
    memory model (XL / kNN) carries its memories through each piece as in training. Also split
    by where a token stands: in the first segment of its piece (``first_segment``), or later
    (``later_segments``, where a memory can help), and by what it is (``by_kind``: ``{"note":
    {"loss", "tokens"}, "duration": ..., "gap": ...}`` for the kinds present, `KIND_NAMES`, each
    target's kind in context as `Tokenizer.token_kinds` gives it). ``per_token=True`` adds the raw per-token
    losses, their segment numbers and their target ids (for plots), and where each target stands
    (``token_pieces``, ``token_positions``: its piece and its position in the piece's ids).
    ``repeats=True`` adds ``repeats``: loss, tokens and bits per token of each group of
    `midigen.repeats.repeat_groups` (first segment; later tokens novel, repeating a bar within
    their segment, or repeating one beyond it), with bars of ``beats_per_bar`` beats.
    """
    import torch
    import torch.nn.functional as F

    from .data import make_batches
    from .data.batching import IGNORE_INDEX

    seq_len = seq_len or model.config.block_size
    model.eval()
    note = torch.as_tensor(corpus.tokenizer.notes_per_token(), device=device)
    uses_memory = model.config.has_memory
    memory = None
    sums = {"all": [0.0, 0, 0], "first_segment": [0.0, 0, 0], "later_segments": [0.0, 0, 0]}
    seg_no = None
    kind_loss, kind_count = np.zeros(len(KIND_NAMES)), np.zeros(len(KIND_NAMES), np.int64)
    raw_losses, raw_segments, raw_targets, raw_pieces, raw_positions = [], [], [], [], []
    if repeats:
        groups = _split_groups(corpus, seq_len, beats_per_bar)
        group_loss, group_count = np.zeros(len(GROUPS)), np.zeros(len(GROUPS), np.int64)
    with torch.no_grad():
        for i, b in enumerate(make_batches(corpus, "contiguous", batch_size, seq_len, seed=0,
                                           sounding=model.config.sounding)):
            if max_batches is not None and i >= max_batches:
                break
            x, y, steps, reset = (b[k].to(device) for k in ("x", "y", "steps", "reset"))
            if memory is None and uses_memory:
                memory = model.new_memory(x.shape[0])
            # segment number of each row within its piece
            seg_no = torch.zeros(x.shape[0], dtype=torch.long, device=device) if seg_no is None else seg_no + 1
            seg_no = torch.where(reset, torch.zeros_like(seg_no), seg_no)
            kw = {"memory": memory, "reset": reset, "valid": b["piece"].to(device) >= 0} if uses_memory else {}
            logits, _ = model(x, steps, **kw, **{k: b[k].to(device) for k in ("sounding",) if k in b})
            valid = y != IGNORE_INDEX
            losses = F.cross_entropy(logits.float().transpose(1, 2), y.clamp(min=0), reduction="none")
            for name, mask in (("all", valid), ("first_segment", valid & (seg_no == 0)[:, None]),
                               ("later_segments", valid & (seg_no > 0)[:, None])):
                sums[name][0] += float(losses[mask].double().sum())
                sums[name][1] += int(mask.sum())
                sums[name][2] += int(note[y.clamp(min=0)][mask].sum())
            # each target's kind in context: the sequence is the row's first input, then its targets
            seq = torch.cat([x[:, :1], y.clamp(min=0)], 1).cpu().numpy()
            kinds = corpus.tokenizer.token_kinds(seq.reshape(-1)).reshape(seq.shape)[:, 1:]
            v = valid.cpu().numpy()
            kind_loss += np.bincount(kinds[v], weights=losses[valid].double().cpu().numpy(), minlength=len(KIND_NAMES))
            kind_count += np.bincount(kinds[v], minlength=len(KIND_NAMES))
            if per_token or repeats:  # each target's piece and position in it
                piece = b["piece"][:, 0].cpu().numpy()
                position = (seg_no.cpu().numpy()[:, None] * seq_len + np.arange(1, seq_len + 1))[v]
                piece = np.broadcast_to(piece[:, None], v.shape)[v]
            if repeats:
                g = groups[corpus.starts[piece] + position]
                group_loss += np.bincount(g, weights=losses[valid].double().cpu().numpy(), minlength=len(GROUPS))
                group_count += np.bincount(g, minlength=len(GROUPS))
            if per_token:
                raw_losses.append(losses[valid].cpu())
                raw_segments.append(seg_no[:, None].expand_as(valid)[valid].cpu())
                raw_targets.append(y[valid].cpu())
                raw_pieces.append(piece)
                raw_positions.append(position)
    total, tokens, notes = sums["all"]
    loss = total / max(tokens, 1)
    out = {"loss": loss, "perplexity": math.exp(min(loss, 50)), "bits_per_token": loss / math.log(2),
           "bits_per_note": total / max(notes, 1) / math.log(2), "tokens": tokens, "notes": notes}
    for name in ("first_segment", "later_segments"):
        t, n, _ = sums[name]
        out[name] = {"loss": t / n if n else float("nan"), "tokens": n}
    out["by_kind"] = {KIND_NAMES[k]: {"loss": float(kind_loss[k] / kind_count[k]), "tokens": int(kind_count[k])}
                      for k in np.flatnonzero(kind_count)}
    if per_token:
        out["token_losses"] = torch.cat(raw_losses).numpy() if raw_losses else np.zeros(0)
        out["token_segments"] = torch.cat(raw_segments).numpy() if raw_segments else np.zeros(0, np.int64)
        out["token_targets"] = torch.cat(raw_targets).numpy() if raw_targets else np.zeros(0, np.int64)
        out["token_pieces"] = np.concatenate(raw_pieces) if raw_pieces else np.zeros(0, np.int64)
        out["token_positions"] = np.concatenate(raw_positions) if raw_positions else np.zeros(0, np.int64)
    if repeats:
        out["repeats"] = {"context": seq_len, "beats_per_bar": beats_per_bar, "groups": {
            name: {"loss": float(group_loss[k] / group_count[k]) if group_count[k] else float("nan"),
                   "tokens": int(group_count[k]),
                   "bits_per_token": (float(group_loss[k] / group_count[k] / math.log(2)) if group_count[k]
                                      else float("nan"))}
            for k, name in enumerate(GROUPS)}}
    return out


def _split_groups(corpus: PreparedCorpus, context: int, beats_per_bar: int) -> np.ndarray:
    """`repeat_groups` of every token of a split, back to back as its pieces are (int64)."""
    tokens, steps = (a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a) for a in (corpus.tokens, corpus.steps))
    out = np.zeros(len(tokens), np.int64)
    for s, n in zip(corpus.starts.tolist(), corpus.lengths.tolist(), strict=True):
        out[s:s + n] = repeat_groups(tokens[s:s + n], steps[s:s + n].astype(np.int64), corpus.tokenizer, context,
                                     beats_per_bar)
    return out
