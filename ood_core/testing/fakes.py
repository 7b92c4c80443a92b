"""Throw-away registrations and plugins for tests of discovery, listing and checkpoints.

Importing this module imports no torch: the toy loss's target is a lazy reference.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

#: the metadata of a minimal loss registration (the built-in cross-entropy under another name)
TOY_LOSS: Mapping[str, Any] = types.MappingProxyType(
    {
        "name": "toy",
        "target": "ood_core.builtin.losses:CrossEntropyLoss",
        "summary": "A toy.",
        "paper": "",
        "tasks": ("classification",),
        "uses_ood": False,
        "scorer": "msp",
        "inputs": ("logits", "target"),
    }
)


def loss_registration(**changes: Any) -> dict[str, Any]:
    """The keywords of one ``register(...)`` call: :data:`TOY_LOSS` with ``changes`` applied."""
    return {**TOY_LOSS, **changes}


def fake_plugin(
    name: str = "fake",
    *,
    losses: Iterable[Mapping[str, Any]] = (),
    scorers: Iterable[Mapping[str, Any]] = (),
    api: int = PLUGIN_API_VERSION,
) -> types.ModuleType:
    """A plugin module registering ``losses`` and ``scorers`` (each a ``register`` keyword set)."""
    plugin = types.ModuleType(name)
    plugin.OODX_PLUGIN_API = api
    for hook, items in (
        ("oodx_register_losses", list(losses)),
        ("oodx_register_scorers", list(scorers)),
    ):
        if items:
            setattr(plugin, hook, hookimpl(_registering(items)))
    return plugin


def _registering(items: list[Mapping[str, Any]]) -> Any:
    def hook(register: Any) -> None:
        for item in items:
            register(**item)

    return hook


__all__ = ["TOY_LOSS", "fake_plugin", "loss_registration"]
