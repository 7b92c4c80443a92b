"""ONNX exporter for oodx: one graph mapping an input batch to model output, OOD score and class.

Importing this package is cheap (no torch, onnx or onnxruntime): the public names load on first
use.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports
from ood_exporter_onnx.errors import (
    ExportError,
    GPUUnavailableError,
    MissingRuntimeError,
    VerificationError,
)

__version__ = "0.1.0"

__getattr__, _lazy_dir = lazy_exports(
    __name__,
    {
        "export_onnx": ".export",
        "ExportOptions": ".options",
        "ExportReport": ".report",
        "verify_onnx": ".verify",
        "OnnxModel": ".runtime",
        "read_metadata": ".runtime",
        "fix_graph": ".graph",
        "convert_fp16": ".graph",
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *_lazy_dir()})


__all__ = [
    "ExportError",
    "ExportOptions",
    "ExportReport",
    "GPUUnavailableError",
    "MissingRuntimeError",
    "OnnxModel",
    "VerificationError",
    "convert_fp16",
    "export_onnx",
    "fix_graph",
    "read_metadata",
    "verify_onnx",
]
