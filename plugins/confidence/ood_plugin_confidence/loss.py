"""Learned-confidence loss (DeVries & Taylor, 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ood_core.labels import is_known, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import compute_dtype, masked_mean
from ood_core.validation import (
    check_classification,
    check_float,
    fail,
    value_checks_enabled,
)


def _check_confidence(owner: str, confidence: object, batch: int) -> Tensor:
    """``confidence`` must be ``(B,)`` or ``(B, 1)`` with values in ``[0, 1]``; returns ``(B,)``."""
    c = check_float(owner, "confidence", confidence, ranks=(1, 2))
    if c.dim() == 2 and c.shape[1] != 1:
        raise fail(owner, "confidence", "of shape (B,) or (B, 1): one confidence per sample", c)
    if c.shape[0] != batch:
        raise fail(owner, "confidence", f"a batch of {batch} to match 'logits'", c)
    if value_checks_enabled(c) and c.numel() and bool(((c < 0) | (c > 1)).any()):
        raise fail(
            owner,
            "confidence",
            "in [0, 1] (apply a sigmoid to the confidence logit)",
            f"values in [{float(c.min()):g}, {float(c.max()):g}]",
        )
    return c.reshape(-1)


class ConfidenceLoss(Loss):
    """Learned-confidence loss: NLL of the confidence-interpolated softmax plus a confidence cost.

    ``L = L_t + alpha * L_c`` with ``L_t = -log(c * p_y + (1 - c))`` and ``L_c = -log(c)``, where
    ``p = softmax(f(x))``, ``y`` the label and ``c in [0, 1]`` the confidence the model predicts
    (``p'_i = c p_i + (1 - c) y_i`` of the paper, with one-hot ``y``). Both terms are averaged
    over the known samples (``target >= 0``); outliers do not contribute, an all-outlier or empty
    batch gives 0 with the graph kept. ``p'`` and ``c`` are clipped to ``[eps, 1]`` before the
    logarithm. ``forward(logits (B, C), confidence (B,) or (B, 1), target (B,))``.
    The paper's hints (interpolating only half the batch) and its budget-driven ``alpha`` are
    training-loop choices, not part of the loss.

    DeVries & Taylor, "Learning Confidence for Out-of-Distribution Detection in Neural Networks",
    arXiv:1802.04865, 2018. Natural scorer: ``confidence`` (``1 - c``; the model appends the
    confidence logit to its logits, see :func:`ood_plugin_confidence.split_confidence`).

    Differs from pytorch-ood 0.4.0: a 1-D confidence ``(B,)`` is one value per sample (0.4.0
    broadcasts it over the classes: wrong values when ``B == C``, a crash otherwise), other
    shapes raise ``ValueError``; fp16/bf16 are computed in fp32; mask-based (no boolean
    indexing, no warning on outliers), so it compiles with ``fullgraph=True``.
    """

    roles = {"logits": "logits", "confidence": "confidence", "target": "target"}

    def __init__(self, alpha: float = 1.0, eps: float = 1e-24) -> None:
        super().__init__()
        owner = type(self).__name__
        if not alpha >= 0:
            raise fail(owner, "alpha", ">= 0", alpha)
        if not 0 < eps < 1:
            raise fail(owner, "eps", "in (0, 1)", eps)
        self.alpha = float(alpha)
        self.eps = float(eps)

    def forward(self, logits: Tensor, confidence: Tensor, target: Tensor) -> Tensor:
        owner = type(self).__name__
        logits, target = check_classification(owner, logits, target, ranks=(2,), masks=True)
        c = _check_confidence(owner, confidence, logits.shape[0])
        dtype = torch.promote_types(compute_dtype(logits.dtype), compute_dtype(c.dtype))
        c = c.to(dtype)
        p = torch.softmax(logits.to(dtype), dim=1)
        p_y = p.gather(1, known_or_zero(target).unsqueeze(1)).squeeze(1)
        nll = -torch.log((c * p_y + (1 - c)).clamp(self.eps, 1.0))
        cost = -torch.log(c.clamp(self.eps, 1.0))
        known = is_known(target)
        return masked_mean(nll, known) + self.alpha * masked_mean(cost, known)

    def scorer(self) -> nn.Module:
        """The natural scorer: ``1 - c`` from the confidence logit in the last logits column."""
        from ood_plugin_confidence.scorer import ConfidenceScorer

        return ConfidenceScorer()
