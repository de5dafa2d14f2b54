"""What every config dataclass shares: one style, JSON on disk, strict reading, declared choices.

A config is a ``@dataclass`` deriving from `JSONConfig` whose fields say their help text (and,
where the values are few, their choices) once, with `opt`::

    @dataclass
    class SamplingConfig(JSONConfig):
        temperature: float = opt(1.0, "softmax temperature (1: the model's distribution)")
        top_p: float | None = opt(None, "nucleus sampling: keep the most likely tokens up to this mass")
        strategy: Literal["a", "b"] = opt("a", "choices come from the Literal type")
        model: str = opt("gpt", "or from metadata", choices=MODELS)

The command line (`midigen.flags`) makes its flags, types, defaults, choices and ``--help`` from
exactly these fields, so the library and the CLI cannot drift apart. ``__post_init__`` checks
the choices; a subclass with checks of its own calls ``super().__post_init__()`` first.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, asdict, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar


def opt(default: Any = MISSING, help: str = "", *, choices: Iterable | None = None, **metadata: Any) -> Any:
    """A dataclass field with its help text (and optional choices) for the command line."""
    meta = {"help": help, **metadata}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict, set)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


@functools.cache
def type_hints(cls: type) -> dict:
    """The resolved type of every field of ``cls`` (annotations may be strings)."""
    return typing.get_type_hints(cls)


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(hint, False)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)) and len(args) == 1:
            return args[0], True
    return hint, False


def choices_of(cls: type, f: Field) -> tuple | None:
    """The values a field may take (from ``metadata["choices"]`` or a ``Literal`` type), or None."""
    if "choices" in f.metadata:
        return tuple(f.metadata["choices"])
    hint, _ = unwrap_optional(type_hints(cls)[f.name])
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None


def _number(kind: type) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, kind) and not isinstance(v, bool)


def _same(v: Any) -> Any:
    return v


#: How a JSON value is checked, and converted, for a field of each type (by the type or its origin:
#: ``Literal[...]`` fields take strings, ``tuple[...]`` fields lists).
_READERS: dict[Any, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), _same),
    int: (_number(numbers.Integral), int),
    float: (_number(numbers.Real), _same),
    str: (lambda v: isinstance(v, str), _same),
    Literal: (lambda v: isinstance(v, str), _same),
    tuple: (lambda v: isinstance(v, (list, tuple)), tuple),
}


def conform(cls: type, name: str, value: Any, hint: Any = None) -> Any:
    """``value`` read from JSON as the type of field ``name`` (lists become tuples), or a ValueError."""
    hint = type_hints(cls)[name] if hint is None else hint
    inner, optional = unwrap_optional(hint)
    if value is None:
        if optional or hint is Any:
            return None
    else:
        reader = _READERS.get(typing.get_origin(inner) or inner)
        if reader is None:  # a type this check does not know: the constructor decides
            return value
        check, convert = reader
        if check(value):
            return convert(value)
    raise ValueError(f"{cls.__name__}.{name}: expected {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    inner, optional = unwrap_optional(hint)
    if typing.get_origin(inner) is Literal:
        name = " | ".join(map(repr, typing.get_args(inner)))
    elif typing.get_origin(inner) is tuple or inner is tuple:
        name = "a list"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} or null" if optional else name


C = TypeVar("C", bound="JSONConfig")  # (a config class's methods return its own type)


class JSONConfig:
    """Base of every config dataclass: ``to_dict``/``from_dict``, JSON, ``replace``, choices.

    ``from_dict`` is strict: an unknown key or a value of the wrong type is a ValueError that
    names the config class and the key.
    """

    def __post_init__(self):
        for f in fields(self):
            allowed = choices_of(type(self), f)
            value = getattr(self, f.name)
            if allowed is not None and value is not None and value not in allowed:
                raise ValueError(f"{type(self).__name__}.{f.name} must be one of "
                                 f"{', '.join(map(str, allowed))}; got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], d: dict) -> C:
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {d!r}")
        hints = type_hints(cls)
        names = [f.name for f in fields(cls) if f.init]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key{'s' if len(unknown) > 1 else ''}: "
                             f"{', '.join(map(repr, unknown))} (known: {', '.join(names)})")
        return cls(**{k: conform(cls, k, v, hints[k]) for k, v in d.items()})

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (checked as ``from_dict`` checks them)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        from .atomic import write_text

        write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls: type[C], path: str | os.PathLike) -> C:
        return cls.from_json(Path(path).read_text())
