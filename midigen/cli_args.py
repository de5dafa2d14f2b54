"""The flags of each ``midigen`` command (`midigen.cli` runs the commands).

Config dataclasses become flags through `midigen.flags` (one `Section` per config: its fields,
types, defaults, choices and help); the few flags that are no config field (positional paths,
``--out``, ``--resume``, ``--blog``, ``-q`` ...) are written out here.
"""

from __future__ import annotations

import argparse

from . import flags
from .flags import Section

# -------------------------------------------------------------------- sections of flags


def encoding_section() -> Section:
    from .encoding import EncodingConfig

    def build(values: dict, args: argparse.Namespace):
        if "max_duration" in values and "max_silence" not in values and EncodingConfig().max_silence is not None:
            values["max_silence"] = max(EncodingConfig().max_silence, values["max_duration"])  # long notes: long gaps
        return EncodingConfig.blog(**values) if args.blog else EncodingConfig.from_dict(values)

    return Section("encoding", (EncodingConfig,), "encoding (EncodingConfig: what the tokens are)", build=build)


def model_section() -> Section:
    from .model import GPTConfig

    classes = (GPTConfig,)

    def build(values: dict, _args: argparse.Namespace) -> dict:  # overrides of the config Trainer sizes for the corpus
        return dict(values)

    names = " / ".join(c.__name__ for c in classes)
    return Section("model", classes, f"model ({names}; defaults as --model chooses)", build=build)


def encoding_args(p: argparse.ArgumentParser) -> list[Section]:
    section = encoding_section()
    flags.add_flags(p, section).add_argument(
        "--blog", action="store_true",
        help="the blog's scheme exactly: no instrument or tempo tokens, drums dropped "
             "(other encoding flags still apply)")
    return [section]


def config_arg(p: argparse.ArgumentParser, sections: list[Section]) -> None:
    p.add_argument("--config", metavar="FILE.json", help=flags.config_help(sections))


# -------------------------------------------------------------------- the parser of each command


def check_args(p: argparse.ArgumentParser) -> list[Section]:
    p.add_argument("paths", nargs="+", help="MIDI files or folders (searched recursively)")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON (every file)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print a table of every file (default: the failures and a summary)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; only the summary line")
    return encoding_args(p)


def encode_args(p: argparse.ArgumentParser) -> list[Section]:
    p.add_argument("file", help="a MIDI file")
    p.add_argument("--limit", type=int, default=0, help="print at most this many tokens")
    return encoding_args(p)


def prepare_args(p: argparse.ArgumentParser) -> list[Section]:
    from .data.prepare import PrepareConfig

    p.add_argument("sources", nargs="+", help="MIDI files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder of the prepared corpus")
    section = Section("prepare", (PrepareConfig,), "prepare (PrepareConfig)")
    flags.add_flags(p, section)
    return [section, *encoding_args(p)]


def train_args(p: argparse.ArgumentParser) -> list[Section]:
    from .monitor import MonitorConfig
    from .runs import MAY_CHANGE
    from .train import TrainConfig

    may = ", ".join(sorted(k.replace("_", "-") for k in MAY_CHANGE - {"out"}))
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", nargs="?", const=True, metavar="RUN",
                     help="continue the run in folder RUN (default: the out folder) exactly, with the data, model and "
                          "settings it was made with; flags given again must agree with the run's, except these: "
                          f"{may}")
    run.add_argument("--overwrite", action="store_true",
                     help="clear the run in the out folder first (else a run there is refused)")
    p.add_argument("--recipe", metavar="NAME|FILE.json",
                   help="start from a recipe's settings (a JSON file like the config file; the config file and "
                        "the flags given override it): bach, the bundled model's recipe (prepare its data first: "
                        "midigen prepare bach)")
    sections = [Section("train", (TrainConfig,), "training (TrainConfig)"), model_section(),
                Section("monitor", (MonitorConfig,),
                        "music monitor at each evaluation, in TensorBoard (MonitorConfig)")]
    for section in sections:
        flags.add_flags(p, section)
    return sections


def generate_args(p: argparse.ArgumentParser) -> list[Section]:
    from .generate import SamplingConfig

    p.add_argument("--checkpoint", required=True,
                   help="run folder, checkpoint folder, or bach-gpt (the bundled model)")
    p.add_argument("--out", required=True, help="output .mid (with --num-samples N: OUT_0.mid ...)")
    p.add_argument("--prompt", help="a MIDI file to continue")
    p.add_argument("--prompt-beats", type=float, help="use only the prompt's first N beats")
    p.add_argument("--num-samples", type=int, default=1, help="pieces to sample (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--int8", action="store_true", help="int8 weights for faster CPU sampling (dynamic quantisation)")
    section = Section("sampling", (SamplingConfig,), "sampling (SamplingConfig)",
                      aliases={"max_new_tokens": ["--max-tokens"]})
    flags.add_flags(p, section)
    return [section]


def evaluate_args(p: argparse.ArgumentParser) -> list[Section]:
    from .evaluate import EvaluateConfig

    p.add_argument("--checkpoint", required=True,
                   help="run folder, checkpoint folder, or bach-gpt (the bundled model)")
    p.add_argument("--data", required=True, help="prepared corpus folder")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    section = Section("evaluate", (EvaluateConfig,), "evaluation (EvaluateConfig)",
                      aliases={"max_new_tokens": ["--max-tokens"]})
    flags.add_flags(p, section)
    return [section]


def render_args(p: argparse.ArgumentParser) -> list[Section]:
    p.add_argument("file", help="a MIDI file")
    p.add_argument("--out", required=True, help="output .wav")
    p.add_argument("--soundfont", help="a .sf2 file (default: pretty_midi's bundled General MIDI SoundFont)")
    p.add_argument("--sample-rate", type=int, help="default 22050")
    return []


def demo_args(p: argparse.ArgumentParser) -> list[Section]:
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--checkpoint", default="bach-gpt",
                   help="run or checkpoint folder (default: bach-gpt, the bundled model)")
    p.add_argument("--samples", type=int, default=8, help="pieces to generate for the evaluation (default: 8)")
    return []


def export_corpus_args(p: argparse.ArgumentParser) -> list[Section]:
    p.add_argument("--composer",
                   help="folder(s) of music21's corpus, comma-separated (bach, beethoven, ...), "
                        "or 'all' (default bach; with --set long, all)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--limit", type=int, default=None, help="export only the first N works")
    p.add_argument("--set", choices=["long"], help="long: music21's long works, repeats expanded (midigen.longcorpus)")
    p.add_argument("--min-notes", type=int, default=1500, help="--set long: works of at least N notes (default 1500)")
    p.add_argument("--include", action="append", metavar="DIR",
                   help="--set long: also the MIDI files of DIR (repeatable)")
    p.add_argument("--min-beats", type=float, default=200,
                   help="--set long: included files of at least N beats (default 200)")
    p.add_argument("--timeout", type=int, default=600, help="--set long: seconds per work (default 600)")
    p.add_argument("--retry-failed", action="store_true", help="--set long: try the works that failed before again")
    return []


def export_model_args(p: argparse.ArgumentParser) -> list[Section]:
    p.add_argument("--checkpoint", required=True, help="run folder (its best checkpoint) or checkpoint folder")
    p.add_argument("--out", required=True, help="folder of the copy")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                   help="weights' type (default float16: half the bytes)")
    return []
