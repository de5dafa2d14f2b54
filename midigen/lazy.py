"""Lazy packages (PEP 562): names imported from their modules on first use.

``import midigen`` (and ``import midigen.data``) must stay cheap and free of torch, so a package
lists its public names in a table, name -> module, and `install` gives it the module-level
``__getattr__`` and ``__dir__`` that import a name's module when the name is first asked for::

    __getattr__, __dir__ = install(__name__, {"prepare": "prepare", "PreparedCorpus": "corpus"})

A name may be the name of its own module (``midigen.generate``, the function in generate.py):
Python binds a submodule as an attribute of its package once it is imported, which would hide
the function; the package's module type set here keeps the name's value instead (the module
stays in ``sys.modules``). Other submodules load on first use too (``midigen.playback``).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable


class LazyPackage(types.ModuleType):
    """A package whose submodules never replace a public name of the same name."""

    _lazy: dict[str, str] = {}

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and self._lazy.get(name) == name:
            return  # `import pkg.name` binding the submodule over the function `pkg.name`
        super().__setattr__(name, value)


def install(package: str, table: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public names come from ``table`` (name ->
    module, relative to the package); the package gets the `LazyPackage` module type."""
    module = sys.modules[package]

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is not None:
            value = getattr(importlib.import_module(f".{where}", package), name)
            vars(module)[name] = value  # found directly from now on
            return value
        if not name.startswith("_"):  # a submodule: midigen.playback, midigen.data.worker, ...
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(module), *table})

    module.__class__ = type("LazyPackage", (LazyPackage,), {"_lazy": table})
    return __getattr__, __dir__
