"""Errors of the ONNX exporter and runtime (importing this module imports neither torch nor onnx)."""

from __future__ import annotations

from ood_core.errors import OODXError

CPU_INSTALL = "pip install ood-exporter-onnx[cpu]"
GPU_INSTALL = "pip install ood-exporter-onnx[gpu]"


class ExportError(OODXError, ValueError):
    """The export cannot be done as asked (bad option, missing loss state, untraceable model)."""


class VerificationError(ExportError):
    """The exported graph failed verification; no file was written."""


class MissingRuntimeError(OODXError, ImportError):
    """onnxruntime is not installed."""

    def __init__(self, what: str = "running an exported model") -> None:
        super().__init__(
            f"onnxruntime is not installed, and {what} needs it. Install the CPU build with "
            f"`{CPU_INSTALL}` or the CUDA build with `{GPU_INSTALL}` (not both)."
        )


class GPUUnavailableError(OODXError, RuntimeError):
    """CUDA was required but onnxruntime runs the model on the CPU."""


def import_onnxruntime(what: str = "running an exported model"):  # noqa: ANN201 - module
    """Import onnxruntime or raise :class:`MissingRuntimeError` naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingRuntimeError(what) from None
    return onnxruntime
