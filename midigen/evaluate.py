"""`midigen evaluate`: likelihood on a split, and music statistics of generated pieces against it.

The metrics themselves (likelihood, music statistics, overlap and KL) live in `midigen.metrics`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .config import JSONConfig, opt
from .metrics import Grid, compare, likelihood, music_statistics

if TYPE_CHECKING:
    from .data import PreparedCorpus
    from .encoding import Tokenizer
    from .midi import Score
    from .model import GPT


@dataclass
class EvaluateConfig(JSONConfig):
    split: Literal["train", "valid", "test"] = opt("test", "the split whose likelihood and statistics are measured")
    samples: int = opt(16, "pieces to generate for the music statistics (0: none)")
    max_new_tokens: int = opt(512, "tokens per generated piece")
    max_batches: int | None = opt(None, "limit the likelihood pass to this many batches (None: the whole split)")
    seed: int = opt(0, "seed of the generated pieces")
    temperature: float = opt(1.0, "sampling temperature of the generated pieces")
    top_p: float | None = opt(None, "nucleus sampling of the generated pieces (None: off)")
    duration_temperature: float | None = opt(None, "temperature of duration tokens of the generated pieces "
                                                   "(None: temperature)")
    gap_temperature: float | None = opt(None, "temperature of the gaps between time steps of the generated pieces "
                                              "(None: duration_temperature)")
    device: str = opt("cpu", "cpu, cuda, cuda:1 ...")
    progress: bool = opt(True, "show progress bars")
    repeats: bool = opt(False, "split the loss by repetition: first segment, novel, a bar repeated within the "
                               "segment or beyond it (midigen.repeats)")
    beats_per_bar: int = opt(4, "bar length in beats for --repeats (the tokens carry no time signature)")
    prompt_beats: float | None = opt(None, "continue held-out pieces: each sample continues the first this many beats "
                                           "of a piece of the split (cycling through them) for as many tokens as the "
                                           "piece has, and the statistics compare the continuations with the pieces' "
                                           "own after those beats (None: pieces from scratch, max_new_tokens each)")

    def __post_init__(self):
        super().__post_init__()
        if self.prompt_beats is not None and not self.prompt_beats > 0:
            raise ValueError(f"prompt_beats must be > 0 (or None: pieces from scratch), got {self.prompt_beats}")


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str | None = None,
             config: EvaluateConfig | None = None, **overrides: object) -> dict:
    """Likelihood on a split plus statistics of ``samples`` generated pieces against the split's.

    ``config``: an `EvaluateConfig`; ``split`` and keyword arguments set its fields, e.g.
    ``evaluate(ckpt, data, "test", samples=16)``.
    """
    if split is not None:
        overrides["split"] = split
    cfg = (config or EvaluateConfig()).replace(**overrides)
    split, samples, max_new_tokens, seed = cfg.split, cfg.samples, cfg.max_new_tokens, cfg.seed
    device, max_batches, progress = cfg.device, cfg.max_batches, cfg.progress
    from tqdm.auto import tqdm

    from .checkpoint import load_model
    from .data import PreparedCorpus
    from .generate import generate

    model, tokenizer, meta = load_model(checkpoint, device=device)
    corpus = PreparedCorpus(data, split, base=not tokenizer.has_merges)
    if corpus.tokenizer != tokenizer:
        what = "BPE tokenizer" if tokenizer.has_merges else "vocabulary"
        raise ValueError(f"{data} was prepared with another {what} than the checkpoint {checkpoint} uses")
    result = {"checkpoint": str(checkpoint), "data": str(data), "split": split}
    result["likelihood"] = likelihood(model, corpus, max_batches=max_batches, device=device, repeats=cfg.repeats,
                                      beats_per_bar=cfg.beats_per_bar)
    spb = tokenizer.config.steps_per_beat
    if cfg.prompt_beats is not None and samples:
        generated, reference = continuations(model, tokenizer, corpus, cfg)
    else:
        reference = [music_statistics(tokenizer.decode(np.asarray(corpus.piece(i)[0])), spb)
                     for i in tqdm(range(len(corpus)), desc="data statistics", disable=not progress)]
        generated = []
        if samples:
            outs = generate(model, tokenizer, num_samples=samples, max_new_tokens=max_new_tokens, seed=seed,
                            min_length=min(max_new_tokens // 2, 128), temperature=cfg.temperature, top_p=cfg.top_p,
                            duration_temperature=cfg.duration_temperature,
                            gap_temperature=cfg.gap_temperature)
            generated = [music_statistics(s, spb) for s in (tokenizer.decode(t.ids) for t in outs) if s.n_notes]
    result["samples"] = len(generated)
    result.update(prompt_beats=cfg.prompt_beats, temperature=cfg.temperature, top_p=cfg.top_p,
                  duration_temperature=cfg.duration_temperature,
                            gap_temperature=cfg.gap_temperature)
    result["statistics"] = compare(generated, reference) if generated else {}
    return result


def after_beats(score: Score, beats: float) -> Score:
    """The notes of ``score`` that start at or after ``beats`` quarter notes (times unchanged)."""
    return score.select(score.start_beats >= beats - 1e-9)


def real_continuations(corpus: PreparedCorpus, beats: float) -> list[dict]:
    """Statistics of each piece of ``corpus`` from ``beats`` quarter notes on."""
    tok = corpus.tokenizer
    return [music_statistics(after_beats(tok.decode(np.asarray(corpus.piece(i)[0])), beats), tok.config.steps_per_beat)
            for i in range(len(corpus))]


def continuations(model: GPT, tokenizer: Tokenizer, corpus: PreparedCorpus, cfg: EvaluateConfig
                  ) -> tuple[list[dict], list[dict]]:
    """Statistics of ``cfg.samples`` continuations of the split's pieces and of the pieces' own
    continuations: sample ``i`` continues the first ``cfg.prompt_beats`` beats of piece
    ``i % len(corpus)`` for as many tokens as the piece has (no ``<eos>`` before), and both are
    measured on their notes from that beat on. Returns ``(generated, reference)``."""
    from tqdm.auto import tqdm

    from .encoding import Tokens
    from .generate import as_prompt, generate

    spb, beats = tokenizer.config.steps_per_beat, float(cfg.prompt_beats)
    n = len(corpus)
    per_piece = np.bincount(np.arange(cfg.samples) % n, minlength=n)
    generated = []
    bar = tqdm(total=cfg.samples, desc="continuations", disable=not cfg.progress)
    for i in np.flatnonzero(per_piece):
        ids, steps = (np.asarray(a) for a in corpus.piece(int(i)))
        prompt = as_prompt(Tokens(ids, steps, tokenizer=tokenizer), tokenizer, beats)
        outs = generate(model, tokenizer, prompt, num_samples=int(per_piece[i]), seed=cfg.seed + int(i),
                        max_new_tokens=max(1, len(ids) - len(prompt)), min_length=len(ids),
                        temperature=cfg.temperature, top_p=cfg.top_p, duration_temperature=cfg.duration_temperature,
                            gap_temperature=cfg.gap_temperature)
        for t in outs:
            score = after_beats(tokenizer.decode(t.ids), beats)
            if score.n_notes:
                generated.append(music_statistics(score, spb))
        bar.update(len(outs))
    bar.close()
    return generated, real_continuations(corpus, beats)


def format_table(result: dict) -> str:
    lk = result["likelihood"]
    lines = [f"{result['split']} split: loss {lk['loss']:.4f} nats/token, perplexity {lk['perplexity']:.2f}, "
             f"{lk['bits_per_token']:.3f} bits/token, {lk['bits_per_note']:.3f} bits/note "
             f"({lk['tokens']:,} tokens, {lk['notes']:,} notes)"]
    if lk.get("repeats"):
        lines.append(repeats_table(lk["repeats"], lk["tokens"]))
    if result.get("statistics"):
        what = (f"continuations of {result['prompt_beats']:g}-beat prompts vs the pieces' own"
                if result.get("prompt_beats") is not None else "generated pieces vs the pieces of the split")
        lines.append(f"\nmusic statistics: {result['samples']} {what} ({result['split']} split)")
        lines.append(f"{'statistic':<22} {'generated':>10} {'data':>10} {'overlap':>8} {'KL':>8}")
        for k, v in result["statistics"].items():
            lines.append(f"{k:<22} {v['generated']:>10.3f} {v['data']:>10.3f} {v['overlap']:>8.3f} {v['kl']:>8.3f}")
    return "\n".join(lines)


def repeats_table(rep: dict, total: int) -> str:
    """The loss of each repetition group (`midigen.repeats`) as a small table."""
    lines = [f"\nloss by repetition (bars of {rep['beats_per_bar']} beats equal up to transposition; "
             f"segments of {rep['context']} tokens)",
             f"{'group':<16} {'tokens':>10} {'share':>7} {'loss':>8} {'bits/token':>11}"]
    for name, g in rep["groups"].items():
        lines.append(f"{name:<16} {g['tokens']:>10,} {g['tokens'] / max(total, 1):>7.1%} {g['loss']:>8.4f} "
                     f"{g['bits_per_token']:>11.3f}")
    return "\n".join(lines)


def sounding_per_step(score: Score, steps_per_beat: int = 4) -> np.ndarray:
    """How many pitches sound at each step of the grid, from the first step to the last note's end.

    `music_statistics` keeps only its summary: ``polyphony`` is its mean over the steps where
    anything sounds, ``polyphony_rate`` the share of those steps with two pitches or more.
    """
    g = Grid.from_score(score, steps_per_beat)
    end = g.onset + g.duration
    delta = np.zeros(int(end.max(initial=0)) + 1, np.int64)
    np.add.at(delta, g.onset, 1)
    np.add.at(delta, end, -1)
    return np.cumsum(delta)[:-1]


def write_json(result: dict, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1))
