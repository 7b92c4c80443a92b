"""Errors of the oodx runtime; each is a mistake a user can fix (the CLI shows one line)."""

from __future__ import annotations

from types import ModuleType

CPU_INSTALL = 'pip install "ood-runtime[cpu]"'
GPU_INSTALL = 'pip install "ood-runtime[gpu]"'
IMAGES_INSTALL = 'pip install "ood-runtime[images]"'


class OODRuntimeError(Exception):
    """Base of the runtime's errors: a missing package, a bad input file, no GPU."""


class InputError(OODRuntimeError, ValueError):
    """Inputs that cannot be read or do not fit the model (names the file and what was wrong)."""


class MissingRuntimeError(OODRuntimeError, ImportError):
    """onnxruntime is not installed."""

    def __init__(self, what: str = "running an exported model") -> None:
        super().__init__(
            f"onnxruntime is not installed, and {what} needs it. Install the CPU build with "
            f"`{CPU_INSTALL}` or the CUDA build with `{GPU_INSTALL}` (not both)."
        )


class GPUUnavailableError(OODRuntimeError, RuntimeError):
    """CUDA was required but onnxruntime runs the model on the CPU."""


def import_onnxruntime(what: str = "running an exported model") -> ModuleType:
    """Import onnxruntime or raise :class:`MissingRuntimeError` naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingRuntimeError(what) from None
    return onnxruntime


__all__ = [
    "CPU_INSTALL",
    "GPU_INSTALL",
    "IMAGES_INSTALL",
    "GPUUnavailableError",
    "InputError",
    "MissingRuntimeError",
    "OODRuntimeError",
    "import_onnxruntime",
]
