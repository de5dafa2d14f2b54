"""``make demo`` / ``midigen demo``: from the bundled data to music you can hear, in one go.

Prepares the bundled chorales (``bach``: `midigen.assets`), continues the opening of a held-out
chorale (from the test split) with the bundled model ``bach-gpt`` (nucleus sampling, top-p 0.99),
writes ``out/demo.mid``, ``out/demo.wav`` and ``out/demo.png`` (piano roll of prompt +
continuation, the boundary marked), then prints the evaluation table (test-split likelihood, and
music statistics of continuations of held-out chorales against the chorales' own).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PROMPT_BEATS = 8
TOP_P = 0.99  # nucleus sampling, chosen on the valid split (benchmarks/RESULTS.md, "What is sounding")


def run_demo(out: str | os.PathLike = "out", data: str | os.PathLike = "bach",
             prepared: str | os.PathLike = "data/prepared/bach", checkpoint: str | os.PathLike = "bach-gpt",
             samples: int = 8, seed: int = 0) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .checkpoint import load_model
    from .data.prepare import prepare
    from .errors import VocabError
    from .evaluate import evaluate, format_table, write_json
    from .generate import generate, prompt_from_midi
    from .midi import write_midi
    from .playback import piano_roll, render, write_wav

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"==> loading the pretrained model from {checkpoint}")
    model, tokenizer, meta = load_model(checkpoint)
    print(f"==> preparing {data} into {prepared} (encoded once, then cached)")
    try:
        r = prepare([data], prepared, tokenizer.config, progress=True)
    except VocabError:  # a corpus of another encoding there (an older midigen's demo): keep it, use another
        prepared = Path(f"{prepared}-{tokenizer.hash[:8]}")
        print(f"    (that folder holds a corpus of another encoding: preparing into {prepared} instead)")
        r = prepare([data], prepared, tokenizer.config, progress=True)
    splits = ", ".join(f"{k} {v['files']}" for k, v in r.manifest["splits"].items())
    print(f"    {r.manifest['files_ok']} chorales: {splits}")
    # a held-out chorale: the test split's first (a tiny corpus may have an empty test split)
    split = next(s for s in ("test", "valid", "train") if r.manifest["splits"][s]["files"])
    held_out = json.loads((Path(prepared) / f"{split}.pieces.json").read_text())[0]
    print(f"==> continuing the first {PROMPT_BEATS} beats of held-out {held_out}")
    prompt = prompt_from_midi(held_out, tokenizer, beats=PROMPT_BEATS)
    length = len(tokenizer.encode(held_out))  # as long as the real chorale
    (toks,) = generate(model, tokenizer, prompt, max_new_tokens=length - len(prompt), seed=seed, min_length=length,
                       top_p=TOP_P)
    score = toks.to_score()  # (with the prompt's part names)
    mid = write_midi(score, out / "demo.mid")
    wav = write_wav(render(score, 22050), out / "demo.wav", 22050)
    fig, ax = plt.subplots(figsize=(14, 4.5))
    title = f"{Path(held_out).name}: {PROMPT_BEATS}-beat prompt | continuation"
    piano_roll(score, ax=ax, mark=PROMPT_BEATS, title=title)
    fig.tight_layout()
    png = out / "demo.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print(f"    wrote {mid} ({score.n_notes} notes), {wav}, {png}")
    print(f"==> evaluating {checkpoint} on the {split} split ({samples} continuations of {PROMPT_BEATS}-beat prompts, "
          f"top-p {TOP_P})")
    result = evaluate(checkpoint, prepared, split, samples=samples, seed=seed, progress=False,
                      prompt_beats=PROMPT_BEATS, top_p=TOP_P)
    write_json(result, out / "demo_eval.json")
    print(format_table(result))
    return result
