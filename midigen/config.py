"""What every config dataclass shares: JSON-ready dicts, and reading them back strictly."""

from __future__ import annotations

from dataclasses import asdict, fields


class JSONConfig:
    """Mixin for config dataclasses: ``to_dict`` and a ``from_dict`` that names unknown keys."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**d)
