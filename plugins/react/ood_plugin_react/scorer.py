"""ReAct: clip the activations before the classifier head, score the energy of its logits."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows
from ood_core.shaping import (
    DEFAULT_MAX_ACTIVATIONS,
    ShapingScorer,
    bounded_quantile,
    check_fraction,
)
from ood_core.validation import check_positive_int, fail


class ReAct(ShapingScorer):
    """Outlier score ``-log sum_c exp(head(pool(min(x, t)))_c)``.

    Sun, Guo and Li, "ReAct: Out-of-distribution Detection With Rectified Activations",
    NeurIPS 2021. Reads feature maps ``(B, C, H, W)`` (or features ``(B, C)``); ``head`` maps
    their global average to logits (see :mod:`ood_core.shaping`). The threshold ``t`` is the
    ``percentile`` quantile of every activation of the ID fit data (rows labelled ``< 0``
    dropped), or ``threshold`` when given (then fit is optional and replaces it). The quantile
    is exact up to ``max_activations`` values, of an evenly spread subsample above (a warning).
    """

    needs_fit = True
    threshold: Tensor

    def __init__(
        self,
        backbone: Any = None,
        head: nn.Module | None = None,
        threshold: float | None = None,
        percentile: float = 0.9,
        detector: Any = None,
        *,
        max_activations: int = DEFAULT_MAX_ACTIVATIONS,
    ) -> None:
        super().__init__(backbone, head, detector)
        owner = type(self).__name__
        self.percentile = check_fraction(owner, "percentile", percentile)
        self.max_activations = check_positive_int(owner, "max_activations", max_activations)
        given = threshold is not None
        if given and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise fail(owner, "threshold", "None or a finite number", repr(threshold))
        if given and not math.isfinite(threshold):
            raise fail(owner, "threshold", "None or a finite number", repr(threshold))
        value = float(threshold) if given else math.nan
        self.register_buffer("threshold", torch.tensor(value, dtype=torch.float64))
        self._set_fitted(given)

    def _fit_begin(self) -> None:
        self._values = BoundedRows(self.max_activations)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if y is not None:
            x = x[y >= 0]
        if self._width is not None and x.shape[1] != self._width:
            raise fail(f"{type(self).__name__}.fit", "x", f"of width {self._width} (dim 1)", x)
        self._values.add(x.reshape(-1, 1))

    def _fit_end(self) -> None:
        t = bounded_quantile(type(self).__name__, self._values, self.percentile, "max_activations")
        self.threshold.fill_(float(t))
        del self._values

    def _shape(self, x: Tensor) -> Tensor:
        return x.clamp(max=self.threshold.to(x.dtype))


__all__ = ["ReAct"]
