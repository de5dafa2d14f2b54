"""Sampling music from a trained model: KV-cached, batched, grammar-constrained.

Every step masks the tokens that cannot come next in the encoding's grammar
(``tokenizer.grammar``, `midigen.encoding.grammar`): a note is always followed by a duration, ``<sep>`` by a gap, an
instrument token by a note, no ``<eos>`` before ``min_length``... so **every sampled sequence
decodes to valid MIDI**, whatever the model (MusicAutoBot only filters note/duration alternation
and self-trained models there still emit undecodable sequences).

Also: separate temperatures for note and duration tokens (as MusicAutoBot offers), top-k and
top-p (nucleus) filtering, batch generation, continuation of a prompt, and pieces longer than the
model's block size through a sliding window (the cache is rebuilt from the most recent tokens).
Each generated token gets its time step, tracked from the gaps, for the musical embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import JSONConfig, opt
from .encoding import Tokenizer, Tokens
from .encoding.grammar import C_INSTR, C_SEP, C_START, contexts
from .encoding.vocab import K_DUR, K_PART
from .midi import Score

if TYPE_CHECKING:
    from .model import GPT


@dataclass
class SamplingConfig(JSONConfig):
    max_new_tokens: int = opt(512, "tokens to sample (after the prompt)")
    temperature: float = opt(1.0, "softmax temperature (below 1: safer, above 1: wilder)")
    note_temperature: float | None = opt(None, "temperature of note tokens (None: temperature)")
    duration_temperature: float | None = opt(None, "temperature of duration tokens (None: temperature)")
    gap_temperature: float | None = opt(None, "temperature of the gaps between time steps (the duration after "
                                              "<sep>: the rhythm) (None: duration_temperature)")
    top_k: int | None = opt(None, "sample among the k most likely tokens only (None: all)")
    top_p: float | None = opt(None, "nucleus sampling: the most likely tokens up to this probability mass (None: all)")
    min_length: int = opt(0, "no <eos> before the sequence has this many tokens")
    constrained: bool = opt(True, "mask the tokens the encoding's grammar does not allow next")
    seed: int | None = opt(None, "random seed (None: a fresh one)")

    def __post_init__(self):
        super().__post_init__()
        for name in ("temperature", "note_temperature", "duration_temperature", "gap_temperature"):
            t = getattr(self, name)
            if t is not None and t <= 0:
                raise ValueError(f"{name} must be > 0, got {t}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")


class _Tables:
    """Per-token grammar and temperature tables on the model's device, built once per call."""

    def __init__(self, tokenizer: Tokenizer, cfg: SamplingConfig, device: torch.device):
        t = lambda a, dt=torch.long: torch.as_tensor(np.asarray(a), dtype=dt, device=device)  # noqa: E731
        g = tokenizer.grammar
        self.allowed = t(g.allowed, torch.bool)  # (contexts, V)
        self.next_ctx = t(g.next_ctx)
        self.advance = t(g.advance)
        self.needs_instrument = t(g.needs_instrument, torch.bool)
        self.gives_instrument = t(g.gives_instrument, torch.bool)
        self.has_eos = t(g.has_eos, torch.bool)
        # with parts (else 0 parts): what each id declares / uses, [after an instrument token or not]
        self.part_decl = t(g.part_decl, torch.float32)  # (2, V, P)
        self.part_use = t(g.part_use, torch.float32)
        self.ends_with_instrument = t(g.ends_with_instrument, torch.bool)
        temp = np.full(len(tokenizer), cfg.temperature, np.float32)
        temp[g.has_duration] = cfg.duration_temperature or cfg.temperature
        temp[g.has_note] = cfg.note_temperature or cfg.temperature  # a merged note+duration: a note
        # by the context before the token: after <sep> a duration is a gap (merged ones start with it)
        temp = np.repeat(temp[None], len(g.allowed), 0)
        temp[C_SEP, g.has_duration] = cfg.gap_temperature or cfg.duration_temperature or cfg.temperature
        self.inv_temp = t(1.0 / np.maximum(temp, 1e-6), torch.float32)  # (contexts, V)


def quantize_for_cpu(model: GPT) -> GPT:
    """A copy of ``model`` with int8 dynamic quantisation of its Linear layers, for CPU sampling.

    Batch-1 generation on a CPU is bound by reading the weights once per token; int8 weights
    are a quarter of the bytes (measured ~1.7x faster here). Inference only; check the samples.
    """
    import copy
    import warnings

    q = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch 2.13 marks these APIs deprecated; they still work
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(q, {torch.nn.Linear}, dtype=torch.qint8)


def _filter(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) > top_p  # keep the first token always
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def as_prompt(prompt: Tokens | Score | str | os.PathLike | None, tokenizer: Tokenizer,
              beats: float | None = None) -> Tokens | None:
    """``generate``'s prompt as `Tokens` of ``tokenizer``: `Tokens`, a `midigen.Score` or a MIDI
    file's path (encoded), or None; ``beats`` keeps only the first that many quarter notes."""
    if prompt is None:
        if beats is not None:
            raise ValueError(f"prompt_beats={beats} needs a prompt")
        return None
    if isinstance(prompt, (Score, str, os.PathLike)):
        return prompt_from_midi(prompt, tokenizer, beats)
    if not isinstance(prompt, Tokens):
        raise TypeError(f"prompt must be Tokens (from tokenizer.encode or generate), a midigen.Score or a MIDI "
                        f"file's path, or None; got {type(prompt).__name__}")
    if prompt.tokenizer is not None and prompt.tokenizer != tokenizer:
        raise ValueError("the prompt was encoded by another tokenizer than the model's: pass the Score or MIDI path "
                         "instead (generate encodes it), or encode it with the model's tokenizer")
    if len(prompt) == 0:
        raise ValueError("the prompt is empty (it needs at least <sos>)")
    if beats is not None:
        prompt = _cut(prompt, int(round(beats * tokenizer.config.steps_per_beat)))
    return prompt


@torch.inference_mode()
def generate(model: GPT, tokenizer: Tokenizer, prompt: Tokens | Score | str | os.PathLike | None = None,
             num_samples: int = 1, config: SamplingConfig | None = None, *, prompt_beats: float | None = None,
             **overrides: object) -> list[Tokens]:
    """Sample ``num_samples`` continuations of ``prompt`` (or pieces from ``<sos>``).

    ``tokenizer`` is the model's `Tokenizer` (with merges, ids and the prompt are merged ids).
    ``prompt``: `Tokens`, or a `midigen.Score` or MIDI file path that is encoded here;
    ``prompt_beats`` keeps only its first that many quarter notes. Returns `Tokens` per sample
    (prompt included, up to and including ``<eos>`` if one was sampled), each carrying
    ``tokenizer``: ``sample.to_score()`` or ``play(sample)`` decode it. Keyword overrides set
    fields of `SamplingConfig`, e.g. ``temperature=0.9``.
    """
    cfg = config or SamplingConfig()
    if overrides:
        try:
            cfg = cfg.replace(**overrides)
        except ValueError as exc:  # (an out-of-range or unknown sampling parameter)
            raise ValueError(f"generate(): {exc}") from None
    prompt = as_prompt(prompt, tokenizer, prompt_beats)
    model.eval()
    device = next(model.parameters()).device
    T = _Tables(tokenizer, cfg, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed if cfg.seed is not None else int(torch.randint(0, 2**31, (1,)).item()))
    B = num_samples

    ids0, steps0, ctx0, step0, instr0, declared0 = _start(prompt, tokenizer)
    ids = torch.as_tensor(ids0, device=device).repeat(B, 1)
    steps = torch.as_tensor(steps0, device=device).repeat(B, 1)
    ctx = torch.full((B,), ctx0, dtype=torch.long, device=device)
    step = torch.full((B,), step0, dtype=torch.long, device=device)
    has_instr = torch.full((B,), instr0, device=device)
    declared = torch.as_tensor(declared0, device=device).repeat(B, 1)  # (B, parts): declared so far
    done = torch.zeros(B, dtype=torch.bool, device=device)
    out_ids, out_steps = [ids], [steps]
    snd = _Sounding(model, tokenizer, ids0, steps0, B, device)

    block = model.config.block_size
    keep = max(1, block * 3 // 4)  # tokens kept when a plain GPT's window slides
    from .model import KVCache  # (no import cycle at module level)

    # Memory models (XL / kNN) read the past from their memories: the prompt goes in segment by
    # segment, and each finished segment is written to the memories instead of sliding a window.
    memory = model.new_memory(B)
    mem_kw = {"memory": memory} if memory is not None else {}

    def prefill(c_ids: torch.Tensor, c_steps: torch.Tensor, c_snd: dict) -> tuple[KVCache, torch.Tensor]:
        c = KVCache(model.config, B, block, device=device, dtype=next(model.parameters()).dtype)
        logits, _ = model(c_ids, c_steps, cache=c, **mem_kw, **c_snd)
        return c, logits[:, -1]

    if memory is not None:
        n_full = (ids.shape[1] - 1) // block  # whole segments of the prompt, at least one token left
        for s in range(n_full):
            lo, hi = s * block, (s + 1) * block
            model(ids[:, lo:hi], steps[:, lo:hi], memory=memory, **snd(lo, hi))
        cache, logits = prefill(ids[:, n_full * block :], steps[:, n_full * block :], snd(n_full * block))
    else:
        cache, logits = prefill(ids[:, -block:], steps[:, -block:], snd(-block))
    length = ids.shape[1]
    for _ in range(cfg.max_new_tokens):
        tok = _sample(logits, T, cfg, ctx, has_instr, declared, length, gen)
        tok = torch.where(done, torch.full_like(tok, tokenizer.pad_id), tok)
        if declared.shape[1]:
            declared |= T.part_decl[(ctx == C_INSTR).long(), tok] > 0
        tok_step = step.clone()
        step = step + T.advance[ctx, tok]
        ctx = T.next_ctx[ctx, tok]
        has_instr |= T.gives_instrument[tok]
        out_ids.append(tok[:, None])
        out_steps.append(tok_step[:, None])
        snd.push(tok, tok_step)
        done |= T.has_eos[tok]
        length += 1
        if bool(done.all()) or length - ids.shape[1] >= cfg.max_new_tokens:
            break  # (no forward pass for a token that will not be used)
        if cache.pos >= block and memory is not None:  # segment full: into the memories
            model.write_segment(memory, cache)
            cache = KVCache(model.config, B, block, device=device, dtype=next(model.parameters()).dtype)
        elif cache.pos >= block:  # slide: rebuild the cache from the most recent tokens
            all_ids, all_steps = torch.cat(out_ids, 1), torch.cat(out_steps, 1)
            cache, logits = prefill(all_ids[:, -keep:], all_steps[:, -keep:], snd(-keep))
            continue
        logits, _ = model(tok[:, None], tok_step[:, None], cache=cache, **mem_kw, **snd.last())
        logits = logits[:, -1]

    return _rows(torch.cat(out_ids, 1).cpu().numpy(), torch.cat(out_steps, 1).cpu().numpy(), tokenizer,
                 prompt.part_names if prompt is not None else ())


class _Sounding:
    """What is sounding at each token of the rows being sampled (`midigen.encoding.sounding`), for a
    model that embeds it: ``snd(lo, hi)`` and ``last()`` are the forward pass's keywords (none for
    other models)."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, ids: np.ndarray, steps: np.ndarray, B: int,
                 device: torch.device):
        self.tracker = None
        if model.config.sounding:
            from .encoding.sounding import SoundingTracker

            self.tracker = SoundingTracker(tokenizer, B)
            self.cols = [torch.as_tensor(self.tracker.replay(ids, steps), device=device).repeat(B, 1)]
            self.device = device

    def push(self, tok: torch.Tensor, tok_step: torch.Tensor) -> None:
        if self.tracker is not None:
            state = self.tracker.push(tok.cpu().numpy(), tok_step.cpu().numpy())
            self.cols.append(torch.as_tensor(state, device=self.device)[:, None])

    def __call__(self, lo: int | None = None, hi: int | None = None) -> dict:
        return {} if self.tracker is None else {"sounding": torch.cat(self.cols, 1)[:, lo:hi]}

    def last(self) -> dict:
        return {} if self.tracker is None else {"sounding": self.cols[-1]}


def _start(prompt: Tokens | None, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, int, int, bool, np.ndarray]:
    """Where sampling starts: the prompt's ids and steps (``<sos>`` without one; a final ``<eos>``
    dropped, to continue the piece), the grammar context after them, the time step where the next
    token stands (the sum of all gaps so far), whether an instrument was set and which parts the
    prompt declared (or used: a prompt's parts may go on)."""
    if prompt is None:
        ids, steps = np.array([tokenizer.sos_id]), np.zeros(1, np.int64)
    else:
        ids, steps = np.asarray(prompt.ids, np.int64), np.asarray(prompt.steps, np.int64)
        if ids[-1] == tokenizer.eos_id:
            ids, steps = ids[:-1], steps[:-1]
    table = tokenizer.table  # the base tokens (merged ids expand to them)
    base = tokenizer.to_base(ids)
    kinds = table.kind[base]
    ctx = contexts(kinds)
    gap_dur = (kinds == K_DUR) & (np.concatenate([[C_START], ctx[:-1]]) == C_SEP)
    has_instr = bool(tokenizer.grammar.gives_instrument[ids].any())  # (with parts: a part token)
    declared = np.zeros(tokenizer.grammar.n_parts, bool)
    declared[table.value[base][(kinds == K_PART) & (table.value[base] < len(declared))]] = True
    return ids, steps, int(ctx[-1]), int(table.value[base][gap_dur].sum()), has_instr, declared


def _sample(logits: torch.Tensor, T: _Tables, cfg: SamplingConfig, ctx: torch.Tensor, has_instr: torch.Tensor,
            declared: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """One token per row: temperatures, the grammar's mask (if constrained), top-k/top-p, a draw."""
    logits = logits.float() * T.inv_temp[ctx]
    if cfg.constrained:
        allowed = T.allowed[ctx]
        allowed = allowed & ~(T.needs_instrument & ~has_instr[:, None])
        if declared.shape[1]:  # parts: use only declared ones, declare only new ones
            after = (ctx == C_INSTR)[:, None]
            d = declared.float().T  # (P, B)
            uses_new = torch.where(after, (T.part_use[1] @ (1 - d)).T, (T.part_use[0] @ (1 - d)).T) > 0
            redeclares = torch.where(after, (T.part_decl[1] @ d).T, (T.part_decl[0] @ d).T) > 0
            allowed = allowed & ~uses_new & ~redeclares
            allowed = allowed & ~(T.ends_with_instrument & declared.all(1, keepdim=True))  # no part left
        if length < cfg.min_length:
            allowed = allowed & ~T.has_eos
        logits = logits.masked_fill(~allowed, float("-inf"))
    logits = _filter(logits, cfg.top_k, cfg.top_p)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen).squeeze(1)


def _rows(all_ids: np.ndarray, all_steps: np.ndarray, tokenizer: Tokenizer, part_names: tuple = ()) -> list[Tokens]:
    """`Tokens` of each row, up to and including its first ``<eos>`` (with the prompt's part names)."""
    results = []
    for row, srow in zip(all_ids, all_steps, strict=True):
        eos = np.flatnonzero(row == tokenizer.eos_id)
        n = eos[0] + 1 if len(eos) else len(row)
        results.append(Tokens(row[:n].astype(tokenizer.dtype), srow[:n].astype(np.int32), {}, tokenizer, part_names))
    return results


def prompt_from_midi(path: Score | str | os.PathLike, tokenizer: Tokenizer, beats: float | None = None) -> Tokens:
    """Encode a MIDI file (or a `midigen.Score`) as a prompt, optionally only its first ``beats``
    quarter notes.

    The prompt is cut on base tokens, then merged where the tokenizer has merges.
    """
    toks = tokenizer.encode_base(path)
    if beats is not None:
        toks = _cut(toks, int(round(beats * tokenizer.config.steps_per_beat)))
    return tokenizer.apply_bpe(toks)


def _cut(toks: Tokens, limit: int) -> Tokens:
    # cut before the first token of the first time step at or past the limit: that is right
    # after a gap, where a continuation may start
    # Tokens of a time step carry its step, and a gap's "<sep> dN" carries the step it leaves,
    # so the first token at or past the limit stands right after a gap: a clean place to cut.
    cut = int(np.searchsorted(toks.steps, limit, side="left"))
    cut = min(max(cut, 1), len(toks) - 1)  # keep <sos>, never keep <eos>
    return Tokens(toks.ids[:cut], toks.steps[:cut], dict(toks.stats), toks.tokenizer, toks.part_names)
