"""Command-line flags made from config dataclasses, and ``--config`` files.

Each field of a config (`midigen.config.JSONConfig`) becomes one flag: ``lr`` -> ``--lr FLOAT``,
``n_layer`` -> ``--n-layer INT``; a bool ``musical`` -> ``--musical/--no-musical``; a ``Literal``
or ``choices=`` field lists its choices; an ``X | None`` field also takes ``none``; a tuple takes
comma-separated items (``--knn-layers 0,1``). The help is the field's help text with its default.
Flags default to "not given", so that only what the user typed overrides a ``--config`` file, which
overrides the dataclass defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import assets
from .config import JSONConfig, choices_of, conform, type_hints, unwrap_optional

NONE_WORDS = ("none", "null")


@dataclass
class Section:
    """One group of flags: the fields of ``classes`` (their union, first class wins a name)."""

    key: str  # its name in a --config file and in parse()'s result ("train", "model", ...)
    classes: tuple
    title: str
    aliases: dict = field(default_factory=dict)  # field -> further option strings (older flag names)
    build: Callable | None = None  # (values, args) -> the config (default: classes[0].from_dict(values))

    def fields(self) -> list:
        seen, out = set(), []
        for cls in self.classes:
            for f in fields(cls):
                if f.init and f.name not in seen:
                    seen.add(f.name)
                    out.append((cls, f))
        return out

    def names(self) -> list[str]:
        return [f.name for _, f in self.fields()]

    def make(self, values: dict, args: argparse.Namespace | None = None) -> JSONConfig | dict:
        return self.build(values, args) if self.build else self.classes[0].from_dict(values)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def default_of(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def show(value: Any) -> str:
    """A default as it appears in --help."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "empty"
    return str(value)


def _item(text: str):
    for t in (int, float):
        try:
            return t(text)
        except ValueError:
            pass
    return text


def _value_parser(cls: type, f: Field) -> tuple[Callable, str]:
    """(str -> value, metavar) for a non-bool field."""
    hint, optional = unwrap_optional(type_hints(cls)[f.name])
    allowed = choices_of(cls, f)
    is_tuple = hint is tuple or typing.get_origin(hint) is tuple
    if allowed is not None:
        metavar = "{" + ",".join(map(str, allowed + (("none",) if optional else ()))) + "}"
    elif is_tuple:
        metavar = "I,J,..."
    else:
        metavar = getattr(hint, "__name__", "VALUE").upper().replace("STR", "TEXT")

    def parse(text: str):
        if optional and text.lower() in NONE_WORDS:
            return None
        if is_tuple:
            return tuple(_item(t.strip()) for t in text.split(",")
                         if t.strip() and t.lower() not in NONE_WORDS)
        if allowed is not None:
            if text not in map(str, allowed):
                raise argparse.ArgumentTypeError(f"invalid choice {text!r} "
                                                 f"(choose from {', '.join(map(str, allowed))})")
            return next(a for a in allowed if str(a) == text)
        if hint in (int, float):
            try:
                return hint(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {'an integer' if hint is int else 'a number'}"
                                                 f"{' or none' if optional else ''}, got {text!r}") from None
        return text

    return parse, metavar + ("|none" if optional and allowed is None else "")


def add_flags(parser: argparse.ArgumentParser, section: Section, quiet: bool = True) -> argparse._ArgumentGroup:
    """The flags of every field of ``section`` (and ``-q/--quiet`` for a ``progress`` field), in a group."""
    g = parser.add_argument_group(section.title)
    for cls, f in section.fields():
        names = [flag(f.name), *section.aliases.get(f.name, ())]
        text = f"{f.metadata.get('help', '')} (default: {show(default_of(f))})".replace("%", "%%")
        dest = f"{section.key}:{f.name}"
        hint, _ = unwrap_optional(type_hints(cls)[f.name])
        if hint is bool:
            g.add_argument(*names, action=argparse.BooleanOptionalAction, dest=dest, default=argparse.SUPPRESS,
                           help=text)
        else:
            parse, metavar = _value_parser(cls, f)
            g.add_argument(*names, type=parse, metavar=metavar, dest=dest, default=argparse.SUPPRESS, help=text)
        if f.name == "progress" and quiet:
            g.add_argument("-q", "--quiet", dest=dest, action="store_false", default=argparse.SUPPRESS,
                           help="no progress bar (same as --no-progress)")
    return g


def in_flag_terms(message: str, section: Section) -> str:
    """A config's error message with its field names as flags: ``n_head`` -> ``--n-head``."""
    for name in sorted(section.names(), key=len, reverse=True):
        message = re.sub(rf"(?<![\w\-/.])(?:\w+Config\.)?{name}(?![\w\-/])", flag(name), message)
    return message


def config_help(sections: list[Section]) -> str:
    keys = ", ".join(f'"{s.key}": {{...}}' for s in sections)
    return ("a JSON file setting any field of the flags below, flat ({\"field_name\": value, ...}) or by "
            f"section ({{{keys}}}); flags given on the command line override it")


def _read_json_object(path: str | os.PathLike, where: str) -> dict:
    """The JSON object in file ``path``; errors say ``where`` (``--config PATH``) in one line."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{where}: is a folder, not a JSON file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
    return d


def read_config(path: str | os.PathLike, sections: list[Section], where: str | None = None) -> dict[str, dict]:
    """The values a --config JSON file sets, per section: ``{key: {field: value}}``."""
    where = where or f"--config {path}"
    d = _read_json_object(path, where)
    by_key = {s.key: s for s in sections}
    owners: dict[str, list[Section]] = {}
    for s in sections:
        for name in s.names():
            owners.setdefault(name, []).append(s)
    out: dict[str, dict] = {s.key: {} for s in sections}

    def put(s: Section, name: str, value: Any):
        cls = next(c for c, f in s.fields() if f.name == name)
        try:
            out[s.key][name] = conform(cls, name, value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    for k, v in d.items():
        if k in by_key and isinstance(v, dict):  # a section (a field may share its name: "model": "xl")
            s = by_key[k]
            unknown = [n for n in v if n not in s.names()]
            if unknown:
                raise ValueError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))} in section {k!r} "
                                 f"(fields of {' / '.join(c.__name__ for c in s.classes)})")
            for name, value in v.items():
                put(s, name, value)
        elif k in owners and len(owners[k]) == 1:
            put(owners[k][0], k, v)
        elif k in owners:
            raise ValueError(f"{where}: {k!r} is ambiguous; put it in a section "
                             f"({', '.join(s.key for s in owners[k])})")
        else:
            classes = [c.__name__ for s in sections for c in s.classes]
            raise ValueError(f"{where}: unknown key {k!r} (neither a field of {', '.join(classes)} "
                             f"nor a section: {', '.join(by_key)})")
    return out


def values(args: argparse.Namespace, sections: list[Section]) -> dict[str, dict]:
    """Per section, the values of the recipe (``--recipe``, if any), overridden by those of the
    --config file (if any), overridden by the flags given."""
    out = {s.key: {} for s in sections}
    for kind in ("recipe", "config"):
        if getattr(args, kind, None):
            path = args.config if kind == "config" else assets.recipe_path(args.recipe)
            for key, v in read_config(path, sections, f"--{kind} {path}").items():
                out[key].update(v)
    for dest, v in vars(args).items():
        key, sep, name = dest.partition(":")
        if sep and key in out:
            out[key][name] = v
    return out


__all__ = ["Section", "add_flags", "config_help", "default_of", "flag", "in_flag_terms", "read_config", "show",
           "values"]
