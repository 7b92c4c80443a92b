"""VRA: rectify each activation between quantiles of the ID data, score the energy of the head."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows
from ood_core.shaping import ShapingScorer, check_fraction, column_quantile
from ood_core.validation import check_positive_int, fail

#: activation values kept to fit the quantiles: ``max_activations // (C H W)`` samples
DEFAULT_MAX_VALUES = 1 << 24


class VRA(ShapingScorer):
    """Outlier score ``-log sum_c exp(head(pool(vra(x)))_c)`` with per-unit thresholds.

    Xu, Lian, Liu and Tao, "VRA: Variational Rectified Activation for Out-of-distribution
    Detection", NeurIPS 2023. ``alpha`` and ``beta`` (shape ``C, H, W``, or ``C`` for features)
    are the ``lower_percentile`` and ``upper_percentile`` quantiles of each unit over the ID fit
    data (rows labelled ``< 0`` dropped). With ``gamma=None`` (pytorch-ood 0.4.0) ``vra(x) =
    clamp(x, alpha, beta)``; with a number, the paper's operator: ``0`` below ``alpha``,
    ``x + gamma`` in ``[alpha, beta]``, ``beta`` above. Reads what it was fitted on: feature
    maps ``(B, C, H, W)`` (or features ``(B, C)``); ``head`` maps their global average to
    logits. At most ``max_activations`` values are kept to fit (an evenly spread subsample of
    samples beyond, with a warning).
    """

    needs_fit = True
    fit_state = ("lower", "upper")
    lower: Tensor
    upper: Tensor

    def __init__(
        self,
        backbone: Any = None,
        head: nn.Module | None = None,
        lower_percentile: float = 0.01,
        upper_percentile: float = 0.99,
        detector: Any = None,
        *,
        gamma: float | None = None,
        max_activations: int = DEFAULT_MAX_VALUES,
    ) -> None:
        super().__init__(backbone, head, detector)
        owner = type(self).__name__
        self.lower_percentile = check_fraction(owner, "lower_percentile", lower_percentile)
        self.upper_percentile = check_fraction(owner, "upper_percentile", upper_percentile)
        if self.lower_percentile > self.upper_percentile:
            raise fail(
                owner,
                "lower_percentile",
                f"at most upper_percentile={upper_percentile}",
                repr(lower_percentile),
            )
        number = isinstance(gamma, (int, float)) and not isinstance(gamma, bool)
        if gamma is not None and not (number and math.isfinite(gamma)):
            raise fail(owner, "gamma", "None (0.4.0's clamp) or a finite number", repr(gamma))
        self.gamma = None if gamma is None else float(gamma)
        self.max_activations = check_positive_int(owner, "max_activations", max_activations)
        self.register_buffer("lower", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("upper", torch.zeros(0, dtype=torch.float64))

    def _fit_begin(self) -> None:
        self._values: BoundedRows | None = None

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if y is not None:
            x = x[y >= 0]
        if self._width is not None and x.shape[1] != self._width:
            raise fail(f"{type(self).__name__}.fit", "x", f"of width {self._width} (dim 1)", x)
        if self._values is None:
            self._unit_shape = tuple(x.shape[1:])
            self._values = BoundedRows(max(1, self.max_activations // math.prod(x.shape[1:])))
        self._values.add(x.flatten(1))

    def _fit_end(self) -> None:
        owner = type(self).__name__
        if self._values is None or self._values.seen == 0:
            raise ValueError(f"{owner}.fit: argument 'x' holds no ID samples (labels < 0 dropped)")
        kept = self._values
        if kept.seen > kept.limit:
            warnings.warn(
                f"{owner}.fit: {kept.seen} samples of {math.prod(self._unit_shape)} activations "
                f"exceed max_activations={self.max_activations}; the quantiles are those of an "
                f"evenly spread subsample of {kept.limit} samples (raise max_activations to keep "
                "more)",
                UserWarning,
                stacklevel=3,
            )
        rows = kept.rows().double()
        self.lower = column_quantile(rows, self.lower_percentile).reshape(self._unit_shape)
        self.upper = column_quantile(rows, self.upper_percentile).reshape(self._unit_shape)
        del self._values

    def _input(self, x: object) -> Tensor:
        z = super()._input(x)
        if self._fitted_host and tuple(z.shape[1:]) != tuple(self.lower.shape):
            units = ", ".join(map(str, self.lower.shape))
            raise fail(type(self).__name__, "feature_maps", f"of shape (B, {units}) as fitted", z)
        return z

    def _shape(self, x: Tensor) -> Tensor:
        lower, upper = self.lower.to(x.dtype), self.upper.to(x.dtype)
        if self.gamma is None:
            return torch.clamp(x, min=lower, max=upper)
        middle = torch.where(x < lower, torch.zeros_like(x), x + self.gamma)
        return torch.where(x > upper, upper.expand_as(x), middle)


__all__ = ["DEFAULT_MAX_VALUES", "VRA"]
