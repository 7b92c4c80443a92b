"""The options of one ONNX export, validated once (imports neither torch nor onnx at import)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ood_exporter_onnx.errors import ExportError

INPUT_FORMATS = ("float", "uint8-nhwc", "uint8-nchw")
MIN_OPSET = 18
DEFAULT_OPSET = 20


@dataclass(frozen=True)
class ExportOptions:
    """How to export: opset, fp16, calibration, verification tolerances and the trace input.

    ``calibrate`` (ID inputs: array, tensor or ``.npy`` path) sets the threshold keeping a
    fraction ``tpr`` of their scores, computed ``calibration_batch_size`` rows at a time.
    ``batch_sizes`` are the onnxruntime batch sizes checked against PyTorch within
    ``atol + rtol * |torch|``. ``example_input`` / ``input_shape`` (without batch) are needed
    only for checkpoints that carry no example (pickled modules). ``input_format``
    ``uint8-nhwc`` / ``uint8-nchw`` makes the graph take raw images and normalise them in-graph
    (``(raw / 255 - mean) / std`` per channel; ``mean``/``std`` lists or ``"a,b,c"``), resized
    to the model's size when ``resize`` (``(H, W)`` or ``"H,W"``, the model's size) is given;
    ``"float"`` (default) keeps the model's own input.
    """

    opset: int = DEFAULT_OPSET
    fp16: bool = False
    calibrate: Any = None
    tpr: float = 0.95
    batch_sizes: tuple[int, ...] = (1, 7)
    rtol: float = 1e-4
    atol: float = 1e-5
    calibration_batch_size: int = 256
    example_input: Any = None
    input_shape: tuple[int, ...] | None = None
    input_format: str = "float"
    mean: Any = None
    std: Any = None
    resize: Any = None

    def __post_init__(self) -> None:
        _check_opset(self.opset)
        object.__setattr__(self, "batch_sizes", _check_batch_sizes(self.batch_sizes))
        if isinstance(self.tpr, bool) or not (
            isinstance(self.tpr, (int, float)) and 0.0 < float(self.tpr) <= 1.0
        ):
            raise ExportError(f"tpr must be a fraction in (0, 1], got {self.tpr!r}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ExportError(f"{name} must be a number >= 0, got {value!r}")
        size = self.calibration_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ExportError(f"calibration_batch_size must be an integer >= 1, got {size!r}")
        if self.input_format not in INPUT_FORMATS:
            raise ExportError(
                f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {self.input_format!r}"
            )
        object.__setattr__(self, "resize", _check_resize(self.resize))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> ExportOptions:
        """Options from a dict (the exporter calling convention); an unknown key is an error."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise ExportError(
                f"the onnx exporter has no option {', '.join(map(repr, unknown))}; it takes "
                f"{', '.join(cls.names())}"
            )
        return cls(**options)


def _check_opset(opset: Any) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ExportError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is too old: torch's ONNX exporter (dynamo=True) honours opset "
            f"{MIN_OPSET} and newer. Use --opset {MIN_OPSET} or higher (default {DEFAULT_OPSET})."
        )
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ExportError(
            f"opset {opset} is newer than this onnx ({onnx.__version__}) knows: {newest}"
        )
    return opset


def _check_resize(resize: Any) -> tuple[int, int] | None:
    if resize is None:
        return None
    parts = resize.replace("x", ",").split(",") if isinstance(resize, str) else resize
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"resize must be two positive sizes H,W like 224,224, got {resize!r}")
    return size  # type: ignore[return-value]


def _check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in batch_sizes)
    except (TypeError, ValueError):
        raise ExportError(f"batch_sizes must be positive integers, got {batch_sizes!r}") from None
    if any(b < 1 for b in sizes) or len(set(sizes)) < 2:
        raise ExportError(
            f"batch_sizes must hold at least two different positive sizes, got {batch_sizes!r}"
        )
    return sizes


__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "ExportOptions"]
