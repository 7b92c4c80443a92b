"""Lazy package exports, so a plugin package can be imported without importing torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` resolving ``exports[name]`` on first use.

    ``exports`` maps an attribute name to the module holding it (absolute, or relative such as
    ``".loss"``). Usage in a package ``__init__``::

        __getattr__, __dir__ = lazy_exports(__name__, {"MCHADLoss": ".loss"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
