"""oodx runtime: serve exported oodx models with numpy and onnxruntime, without torch.

Importing this package is cheap (numpy is imported by the modules that need it, on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "OnnxModel": "model",
    "OnnxRuntimeWarning": "model",
    "flag_ood": "model",
    "check_runtime_install": "model",
    "decode_metadata": "metadata",
    "read_metadata": "metadata",
    "describe_onnx": "onnxfile",
    "load_inputs": "inputs",
    "load_images": "inputs",
    "ood_metrics": "metrics",
    "threshold_for_id_rate": "metrics",
    "OODRuntimeError": "errors",
    "InputError": "errors",
    "MissingRuntimeError": "errors",
    "GPUUnavailableError": "errors",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ood_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ood_runtime.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = sorted(_EXPORTS)
