"""Drop-in checks against a reference implementation (e.g. pytorch-ood 0.4.0) for plugin tests."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

_Param = tuple[str, Any, Any]


def _parameters(obj: Callable[..., Any]) -> list[_Param]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(obj).parameters.values()]


def signature_differences(
    ours: Any, theirs: Any, methods: Sequence[str] = ("__init__", "forward")
) -> list[str]:
    """How the call signatures of ``ours`` differ from ``theirs`` (empty when they agree).

    For classes, ``methods`` are compared (parameter names, order, kinds and defaults); for
    functions, the functions themselves. Annotations are ignored.
    """
    if isinstance(ours, type) != isinstance(theirs, type):
        return [f"{ours!r} and {theirs!r} are not both classes or both callables"]
    names = [f".{m}" for m in methods] if isinstance(ours, type) else [""]
    problems = []
    for name in names:
        a = getattr(ours, name[1:]) if name else ours
        b = getattr(theirs, name[1:]) if name else theirs
        mine, ref = _parameters(a), _parameters(b)
        if mine != ref:
            label = getattr(ours, "__qualname__", repr(ours)) + name
            problems.append(f"{label}{inspect.signature(a)} != reference {inspect.signature(b)}")
    return problems


def assert_same_signature(
    ours: Any, theirs: Any, methods: Sequence[str] = ("__init__", "forward")
) -> None:
    """Assert that ``ours`` can be called exactly as ``theirs`` (see :func:`signature_differences`)."""
    problems = signature_differences(ours, theirs, methods)
    assert not problems, "not a drop-in replacement: " + "; ".join(problems)


def assert_same_keywords(ours: type, theirs: type, skip: Sequence[str] = ("model",)) -> None:
    """Assert that ``ours.__init__`` takes the keywords of ``theirs.__init__`` (names, order,
    defaults), less ``skip`` (a detector's ``model``: scorers take the model's outputs)."""

    def keywords(cls: type) -> list[tuple[str, Any]]:
        params = inspect.signature(cls.__init__).parameters.values()
        return [(p.name, p.default) for p in params if p.name not in ("self", *skip)]

    mine, ref = keywords(ours), keywords(theirs)
    assert mine[: len(ref)] == ref, f"not a drop-in replacement: {mine} != reference {ref}"
