"""oodx core: plugin hooks and discovery, shared OOD primitives, metrics and checkpoints.

Importing this package is cheap and never imports torch: the torch-based parts (primitives,
checkpoints) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

from ood_core.errors import (
    CheckpointError,
    OODXError,
    PluginLoadError,
    RegistrationError,
    UnknownNameError,
)
from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl, hookspec
from ood_core.registry import (
    ExporterInfo,
    LossInfo,
    NameClashError,
    PluginInfo,
    ScorerInfo,
    SlowPluginWarning,
    create_loss,
    create_scorer,
    get_exporter,
    get_info,
    list_exporters,
    list_losses,
    list_plugins,
    list_scorers,
    reload_plugins,
)

__version__ = "0.1.0"

# name -> module holding it; imported on first access so that `import ood_core` stays light
_LAZY = {
    "is_known": "ood_core.labels",
    "is_unknown": "ood_core.labels",
    "apply_reduction": "ood_core.reduction",
    "masked_mean": "ood_core.reduction",
    "ClassCenters": "ood_core.centers",
    "RunningCenters": "ood_core.centers",
    "squared_distances": "ood_core.centers",
    "OODMetrics": "ood_core.metrics",
    "save": "ood_core.checkpoint",
    "load": "ood_core.checkpoint",
    "Loss": "ood_core.loss",
    "Scorer": "ood_core.scoring",
    "select_output": "ood_core.outputs",
    "tap": "ood_core.outputs",
    "resolve_scorer": "ood_core.resolve",
}


_SUBMODULES = {
    "centers",
    "checkpoint",
    "functional",
    "labels",
    "loss",
    "metrics",
    "outputs",
    "reduction",
    "resolve",
    "scoring",
    "testing",
    "validation",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ood_core.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ood_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "PLUGIN_API_VERSION",
    "CheckpointError",
    "ExporterInfo",
    "LossInfo",
    "NameClashError",
    "OODXError",
    "PluginInfo",
    "PluginLoadError",
    "RegistrationError",
    "ScorerInfo",
    "SlowPluginWarning",
    "UnknownNameError",
    "create_loss",
    "create_scorer",
    "get_exporter",
    "get_info",
    "hookimpl",
    "hookspec",
    "list_exporters",
    "list_losses",
    "list_plugins",
    "list_scorers",
    "reload_plugins",
    *_LAZY,
]
