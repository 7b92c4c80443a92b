"""Background-class loss: outliers are trained as an extra, last class."""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ood_core.loss import Loss
from ood_core.reduction import Reduction, check_reduction, in_compute_dtype
from ood_core.validation import (
    check_finite,
    check_float_shape,
    check_target,
    check_target_bounds,
    check_target_logits,
    fail,
)


class BackgroundClassLoss(Loss):
    """Cross-entropy over ``N + 1`` classes in which every outlier is labelled as class ``N``.

    ``L(x, y) = -log softmax(f(x))_{y'}`` with ``y' = y`` for ``y >= 0`` and ``y' = N`` for
    outliers (``y < 0``); the model has ``N + 1`` outputs, the background class last. ``mean``
    averages over all entries (known and outliers). Classification ``(B, N + 1)`` and, per
    pixel, segmentation ``(B, N + 1, H, W)``.

    The background (or "garbage") class is the baseline Dhamija, Günther & Boult evaluate in
    "Reducing Network Agnostophobia", NeurIPS 2018. Natural scorer: ``background-class``, the
    softmax probability of the background class.

    Differs from pytorch-ood 0.4.0: an empty batch gives 0 with the graph kept (0.4.0: NaN);
    ``reduction=None`` means ``"none"`` (0.4.0 raises); logits without exactly ``N + 1``
    columns raise ``ValueError`` (0.4.0 trains them silently, or fails inside cross-entropy);
    the target check is skipped while compiling, so forward compiles with ``fullgraph=True``;
    fp16/bf16 are computed in fp32. A ``-inf`` logit masks a class (finite loss) unless it is
    the target of an entry (the background class for outliers); NaN and ``+inf`` raise.
    """

    roles = {"logits": "logits", "targets": "target"}

    def __init__(self, n_classes: int, reduction: Reduction = "mean") -> None:
        super().__init__()
        owner = type(self).__name__
        try:
            count = operator.index(n_classes)
        except TypeError:
            count = 0
        if isinstance(n_classes, bool) or count < 1:
            raise fail(
                owner, "n_classes", "a positive int (known classes, without background)", n_classes
            )
        self.num_classes = count
        self.reduction = check_reduction(reduction, owner)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        owner = type(self).__name__
        logits = check_float_shape(owner, "logits", logits, ranks=(2, 4))
        if logits.shape[1] != self.num_classes + 1:
            raise fail(
                owner,
                "logits",
                f"{self.num_classes + 1} columns (n_classes={self.num_classes} + background)",
                logits,
            )
        targets = check_target(
            owner, targets, shape=(logits.shape[0], *logits.shape[2:]), arg="targets"
        )
        bounds = check_target_bounds(owner, targets, self.num_classes, arg="targets")
        targets = self._relabel(targets, bounds)
        reduction = self.reduction or "none"
        if reduction == "mean" and not targets.numel():  # 0 with the graph kept, not NaN
            reduction = "sum"
        loss = F.cross_entropy(in_compute_dtype(logits), targets, reduction=reduction)
        # every entry enters the loss, which is finite unless a logit is NaN or +inf, a row is all
        # -inf or an entry's target logit is -inf: only a non-finite loss pays for the diagnosis
        if bounds is not None and not math.isfinite((loss.sum() if loss.dim() else loss).item()):
            if check_finite(owner, "logits", logits, masks=True):
                check_target_logits(owner, "logits", logits, targets)
        return loss

    def _relabel(self, targets: Tensor, bounds: tuple[int, int] | None) -> Tensor:
        """Outliers labelled as the background class ``N``; ``bounds``: the targets' (min, max)."""
        if bounds is not None and bounds[0] >= 0:
            return targets
        if bounds is not None and bounds[0] == -1:  # one kernel: -1 mod (N + 1) = N
            return targets.remainder(self.num_classes + 1)
        return torch.where(targets < 0, self.num_classes, targets)

    def scorer(self) -> nn.Module:
        """The natural scorer, softmax probability of the background class."""
        from ood_plugin_background_class.scorer import BackgroundClassScorer

        return BackgroundClassScorer()
