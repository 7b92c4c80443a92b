"""Errors of the ONNX exporter (importing this module imports neither torch nor onnx).

The runtime's errors (no onnxruntime, no GPU) live in ``ood_runtime.errors`` and are re-exported
here, so that catching ``ood_exporter_onnx.MissingRuntimeError`` keeps working.
"""

from __future__ import annotations

from ood_core.errors import OODXError
from ood_runtime.errors import (
    CPU_INSTALL,
    GPU_INSTALL,
    GPUUnavailableError,
    MissingRuntimeError,
    import_onnxruntime,
)


class ExportError(OODXError, ValueError):
    """The export cannot be done as asked (bad option, missing loss state, untraceable model)."""


class VerificationError(ExportError):
    """The exported graph failed verification; no file was written."""


__all__ = [
    "CPU_INSTALL",
    "GPU_INSTALL",
    "ExportError",
    "GPUUnavailableError",
    "MissingRuntimeError",
    "VerificationError",
    "import_onnxruntime",
]
