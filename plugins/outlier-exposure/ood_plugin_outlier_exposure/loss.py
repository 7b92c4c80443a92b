"""The Outlier Exposure loss (Hendrycks et al., ICLR 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ood_core.arguments import check_real
from ood_core.labels import is_known, is_unknown, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import (
    Reduction,
    apply_reduction,
    check_reduction,
    compute_dtype,
    masked_mean,
    masked_reduction,
)
from ood_core.validation import check_classification, fail


class OutlierExposureLoss(Loss):
    """Outlier Exposure: cross-entropy on ID data, uniform-posterior cross-entropy on outliers.

    With logits ``f(x)`` over ``C`` classes, ``p = softmax(f(x))``, the ID entries ``I``
    (``target >= 0``) and the outlier entries ``O`` (``target < 0``) of a batch::

        L_CE(x, y) = -log p_y                                    x in I
        L_OE(x)    = -(1/C) sum_c log p_c                        x in O
                   = logsumexp_c f_c(x) - (1/C) sum_c f_c(x)     (cross-entropy to uniform)

        L = mean_{x in I} L_CE(x, y) + alpha * mean_{x in O} L_OE(x)      (reduction="mean")

    Hendrycks, Mazeika, Dietterich, "Deep Anomaly Detection with Outlier Exposure", ICLR 2019
    (arXiv:1812.04606): the authors' code averages the cross-entropy over the in-distribution
    batch and the OE term over the outlier batch, then adds ``alpha`` (``0.5``) times the
    latter. ``reduction="sum"`` sums ``L_CE`` over ``I`` plus ``alpha`` times ``L_OE`` summed
    over ``O``; ``"none"`` (or ``None``) gives ``L_CE`` at ID entries and ``alpha * L_OE`` at
    outlier entries, in the target's shape. Classification ``(B, C)`` with targets ``(B,)``
    and segmentation ``(B, C, H, W)`` with targets ``(B, H, W)`` (per pixel). A part of the
    batch that is empty contributes 0, with the graph kept. Natural scorer: ``msp`` (the
    negative maximum softmax probability, :meth:`scorer`).

    Differs from pytorch-ood 0.4.0: with ``reduction="mean"`` 0.4.0 divides the sum of both
    terms by the whole batch size, ``(sum_I L_CE + alpha * sum_O L_OE) / |I u O|``, so the
    weight of each term depends on the ID/outlier ratio of the batch; we average each term
    over its own part as the paper's code does. ``batch_mean=True`` restores 0.4.0's
    whole-batch mean. 0.4.0 also fails on fp16, bf16 and fp64 logits and returns NaN for an
    empty batch; we compute in fp32 (fp64 for fp64 inputs) and return 0. Bad input raises a
    ``ValueError`` naming the argument; ``forward`` compiles with ``fullgraph=True``.
    """

    roles = {"logits": "logits", "target": "target"}

    def __init__(
        self, alpha: float = 0.5, reduction: Reduction = "mean", batch_mean: bool = False
    ) -> None:
        """
        :param alpha: weight of the outlier term (``>= 0``)
        :param reduction: ``"mean"``, ``"sum"`` or ``"none"``/``None``
        :param batch_mean: with ``reduction="mean"``, divide the sum of both terms by the
            number of entries of the whole batch, as pytorch-ood 0.4.0 does, instead of
            averaging each term over its own part (the paper's reference code)
        """
        super().__init__()
        owner = type(self).__name__
        if not isinstance(batch_mean, bool):
            raise fail(owner, "batch_mean", "True or False", repr(batch_mean))
        self.alpha = check_real(owner, "alpha", alpha, minimum=0.0)
        self.reduction = check_reduction(reduction, owner)
        self.batch_mean = batch_mean

    def terms(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Unreduced, unweighted terms ``ce`` and ``oe`` (0 outside their part of the batch)."""
        logits, target = check_classification(type(self).__name__, logits, target)
        # one log-softmax for both terms: L_CE = -log p_y, L_OE = -mean_c log p_c
        log_p = torch.log_softmax(logits.to(compute_dtype(logits.dtype)), dim=1)
        ce = masked_reduction(
            -log_p.gather(1, known_or_zero(target).unsqueeze(1)).squeeze(1),
            is_known(target),
            "none",
        )
        oe = masked_reduction(-log_p.mean(dim=1), is_unknown(target), "none")
        return {"ce": ce, "oe": oe}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss for ``logits`` ``(B, C[, H, W])`` and ``target`` ``(B[, H, W])``.

        Targets ``< 0`` mark outliers. Returns a scalar, or per-entry values with
        ``reduction="none"``.
        """
        t = self.terms(logits, target)
        ce, oe = t["ce"], t["oe"]
        if self.reduction == "mean" and not self.batch_mean:
            return masked_mean(ce, is_known(target)) + self.alpha * masked_mean(
                oe, is_unknown(target)
            )
        return apply_reduction(ce + self.alpha * oe, self.reduction, type(self).__name__)

    def scorer(self) -> nn.Module:
        """The natural scorer ``msp``: negative maximum softmax probability."""
        from ood_core.builtin.scorers import MaxSoftmax

        return MaxSoftmax()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, reduction={self.reduction!r}, batch_mean={self.batch_mean}"
