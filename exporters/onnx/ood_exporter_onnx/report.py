"""What an ONNX export wrote and how it was verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it was verified."""

    path: Path
    scorer: str
    scorer_source: str
    loss: str | None
    opset: int
    fp16: bool
    input_shape: list[int | None]
    batch_sizes: tuple[int, ...]
    rtol: float
    atol: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    fp16_score_deviation: dict[str, float] | None = None
    threshold: float | None = None
    tpr: float | None = None
    calibration_samples: int = 0
    size_bytes: int = 0
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines in words, for the command line."""
        lines = [
            f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, opset {self.opset}"
            f"{', fp16' if self.fp16 else ''}) in {self.seconds:.1f} s",
            f"  scorer {self.scorer} ({self.scorer_source}); loss {self.loss or '(none)'}; "
            f"input {self.input_shape} (None = batch)",
            f"  verified in onnxruntime at batch sizes {list(self.batch_sizes)}: max |onnx - "
            f"torch| "
            + ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
            + (
                " (fp16: reported, not held to a tolerance)"
                if self.fp16
                else f" (tolerance atol {self.atol:g} + rtol {self.rtol:g} * |torch|)"
            ),
        ]
        if self.fp16_score_deviation:
            dev = self.fp16_score_deviation
            lines.append(
                f"  fp16 vs fp32 score: max abs {dev['max_abs']:.3e}, max rel "
                f"{dev['max_rel']:.3e}, prediction agreement {dev['prediction_agreement']:.1%}"
            )
        if self.threshold is not None:
            lines.append(
                f"  threshold {self.threshold:.6g}: keeps {self.tpr:.0%} of "
                f"{self.calibration_samples} ID samples (score > threshold = OOD)"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


__all__ = ["ExportReport"]
