"""Activation shaping before the classifier head: the shared part of ReAct, ASH, SCALE and kin.

These scorers read the last feature maps before global pooling, ``(B, C, H, W)``, or pooled
features ``(B, C)`` (taken as ``1 x 1`` maps), change the activations, pool, and score the
logits of the classifier head. ``head`` maps POOLED features ``(B, C)`` to logits, torchvision
style (``avgpool`` + ``flatten`` + ``fc``): the scorer takes the global average over ``H, W``
before calling it (:func:`global_pool`), so ``head=model.fc`` of such a classifier and its last
feature map (``ood_core.tap(model, feature_maps="layer4")``) are what it needs. The logits are
scored by their free energy ``-logsumexp`` (Liu et al., NeurIPS 2020), as in each paper;
pytorch-ood 0.4.0's ``detector=`` takes another map from logits to scores.

Fitted thresholds are quantiles of activations streamed over the fit data: the values are kept
in a :class:`~ood_core.bank.BoundedRows` subsample of at most ``limit`` values spread evenly over
the stream (golden-ratio positions, no random generator). Up to ``limit`` values the quantile is
exact; above it is the quantile of the subsample (a warning says so), whose rank error for
activations whose order is unrelated to the golden-ratio sequence is about
``sqrt(q (1 - q) / limit)`` (1.5e-4 at ``q = 0.9`` and the default 2^22): a typical, not a
worst-case, bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows
from ood_core.functional import energy
from ood_core.head import apply_head, require_head
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.statistics import refuse_model
from ood_core.validation import check_float, fail, fail_closed

#: activation values kept to fit a quantile (exact below, an evenly spread subsample above)
DEFAULT_MAX_ACTIVATIONS = 1 << 22


def global_pool(x: Tensor) -> Tensor:
    """Global average pooling: ``(B, C, H, W) -> (B, C)``; features ``(B, C)`` pass through."""
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


def head_width(head: nn.Module) -> int | None:
    """The feature width the head takes: ``in_features`` of its first ``nn.Linear`` (or None)."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            return module.in_features
    return None


def check_fraction(owner: str, arg: str, value: object, *, below_one: bool = False) -> float:
    """``value`` must be a number in ``[0, 1]`` (``[0, 1)`` with ``below_one``); returns it."""
    high = "1)" if below_one else "1]"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    if not ok or (below_one and value == 1):
        raise fail(owner, arg, f"a fraction in [0, {high}", repr(value))
    return float(value)


def kept_count(owner: str, arg: str, n: int, fraction: float) -> int:
    """Entries kept when the lowest ``fraction`` of ``n`` are dropped: ``n - round(n fraction)``.

    ``round`` halves to even (as numpy's). A static shape computation: it exports. Raises when
    nothing would be kept.
    """
    k = n - round(n * fraction)
    if k < 1:
        raise fail(owner, arg, f"a fraction that keeps at least one of {n} activations", fraction)
    return k


def quantile(values: Tensor, q: float) -> Tensor:
    """The ``q``-quantile of a 1-d tensor with linear interpolation (numpy's default), any size."""
    ordered = values.flatten().sort().values
    pos = q * (ordered.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def bounded_quantile(owner: str, rows: BoundedRows, q: float, arg: str) -> Tensor:
    """The ``q``-quantile of the values kept by ``rows`` (float64); warns if they were reduced."""
    if rows.seen == 0:
        raise ValueError(f"{owner}.fit: argument 'x' holds no ID samples (labels < 0 are dropped)")
    rows.warn_if_reduced(owner, arg)
    return quantile(rows.rows().double(), q)


def fail_closed_rows(scores: Tensor, x: Tensor) -> Tensor:
    """``scores`` with every sample whose input holds a non-finite value set to ``+inf``.

    Shaping can hide a bad activation (a clipped ``+inf`` is finite), so the input decides.
    """
    bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
    bad = bad.reshape(bad.shape + (1,) * (scores.dim() - 1))
    return fail_closed(torch.where(bad, torch.full_like(scores, math.inf), scores))


def check_detector(owner: str, detector: object) -> Callable[[Tensor], Tensor] | None:
    """pytorch-ood's ``detector``: ``None`` (energy) or a callable from logits to scores."""
    if detector is not None and not callable(detector):
        raise fail(
            owner, "detector", "None (energy) or a callable mapping logits to scores", detector
        )
    return detector


class ShapingScorer(Scorer):
    """Scores ``detector(head(pool(shape(x))))`` (energy by default); subclasses define
    :meth:`_shape`. Reads feature maps ``(B, C, H, W)`` or features ``(B, C)``; see the module
    docstring for the head. The class decision is the head's argmax on the unshaped input.
    """

    reads = "feature_maps"
    #: pytorch-ood 0.4.0's name for the model part that oodx does not take
    model_arg = "backbone"
    #: ranks of the input: 4 (feature maps) or 2 (features)
    ranks: tuple[int, ...] = (2, 4)

    def __init__(self, model: Any, head: nn.Module | None, detector: Any) -> None:
        owner = type(self).__name__
        refuse_model(owner, self.model_arg, model)
        super().__init__(head=require_head(owner, head))
        self.detector = check_detector(owner, detector)
        self._width = head_width(self.head)

    def _input(self, x: object) -> Tensor:
        """Checked input in its compute dtype; its width must be the head's."""
        owner, arg = type(self).__name__, str(self.reads)
        x = check_float(owner, arg, x, ranks=self.ranks)
        if self._width is not None and x.shape[1] != self._width:
            maps = f" or (B, {self._width}, H, W)" if 4 in self.ranks else ""
            raise fail(owner, arg, f"of shape (B, {self._width}){maps} for the head", x)
        return x.to(compute_dtype(x.dtype))

    def _shape(self, x: Tensor) -> Tensor:
        """The shaped activations (same shape as ``x``)."""
        raise NotImplementedError

    def _logits(self, x: Tensor) -> Tensor:
        """Logits of the shaped input ``x``: the head on its global average."""
        return apply_head(self.head, global_pool(self._shape(x)))

    def forward(self, x: Tensor) -> Tensor:
        self._check_fitted()
        z = self._input(x)
        logits = self._logits(z)
        scores = energy(logits) if self.detector is None else self.detector(logits)
        return fail_closed_rows(scores, z)

    def predict(self, x: Tensor) -> Tensor:
        """The head's argmax on the pooled, unshaped input (the model's own decision)."""
        return apply_head(self.head, global_pool(self._input(x))).argmax(dim=1)


def column_quantile(values: Tensor, q: float) -> Tensor:
    """The ``q``-quantile of each column of ``values`` ``(n, ...)`` with linear interpolation
    (numpy's default along axis 0): shape ``values.shape[1:]``, any size (no torch.quantile
    size limit)."""
    ordered = values.sort(dim=0).values
    pos = q * (ordered.shape[0] - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


__all__ = [
    "DEFAULT_MAX_ACTIVATIONS",
    "ShapingScorer",
    "bounded_quantile",
    "check_detector",
    "check_fraction",
    "column_quantile",
    "fail_closed_rows",
    "global_pool",
    "head_width",
    "kept_count",
    "quantile",
]
