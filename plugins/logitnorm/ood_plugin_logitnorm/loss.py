"""LogitNorm loss (Wei et al., ICML 2022)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ood_core.functional import cross_entropy
from ood_core.loss import Loss
from ood_core.reduction import Reduction, check_reduction, compute_dtype
from ood_core.validation import check_classification, fail

#: added to the logit norm before dividing, as in the authors' code (keeps zero logits finite)
NORM_EPS = 1e-7


def logit_norm_loss(
    logits: Tensor, target: Tensor, t: float = 1.0, reduction: Reduction = "mean"
) -> Tensor:
    """Cross-entropy of ``f / (t * (||f||_2 + 1e-7))`` over the ID entries (``target >= 0``).

    ``logits`` ``(B, C)`` or ``(B, C, H, W)`` (the norm runs over the class dim 1), ``target``
    ``(B,)`` or ``(B, H, W)``. ``mean`` averages over the ID entries (0 when none, graph kept),
    ``none`` keeps the target's shape with outlier entries 0. Computed in at least fp32.
    """
    owner = "logit_norm_loss"
    if not t > 0:
        raise fail(owner, "t", "a temperature > 0", t)
    return _logit_norm(owner, logits, target, t, check_reduction(reduction, owner))


def _logit_norm(
    owner: str, logits: Tensor, target: Tensor, t: float, reduction: Reduction
) -> Tensor:
    logits, target = check_classification(owner, logits, target)
    x = logits.to(compute_dtype(logits.dtype))
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True) + NORM_EPS
    return cross_entropy(x / (t * norm), target, reduction)


class LogitNorm(Loss):
    """LogitNorm: cross-entropy on logits normalised to unit L2 norm and scaled by ``1/t``.

    ``L(x, y) = -log softmax(f(x) / (t * ||f(x)||_2))_y`` as in the paper, with
    ``1e-7`` added to the norm as in the authors' code. Normalising removes the logit magnitude
    from the loss, so training cannot lower it by inflating the logits, which curbs
    overconfidence; ``t`` is the temperature ``tau`` (the paper tunes it, 0.04 on CIFAR-10; the
    default 1.0 is pytorch-ood's). Targets ``< 0`` (outliers) are ignored. Classification
    ``(B, C)`` and, per pixel, segmentation ``(B, C, H, W)``.

    Wei et al., "Mitigating Neural Network Overconfidence with Logit Normalization", ICML 2022.
    Natural scorer: ``msp`` (maximum softmax probability of the raw logits).

    Differs from pytorch-ood 0.4.0: ``reduction="none"`` keeps one value per sample with
    outliers 0 (0.4.0 drops the outlier rows, so the output length depends on the data);
    outliers are ignored by masking, without a warning, so it compiles with ``fullgraph=True``;
    fp16/bf16 are computed in fp32; ``t`` and ``reduction`` are validated.
    """

    roles = {"logits": "logits", "target": "target"}

    def __init__(self, t: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        owner = type(self).__name__
        if not t > 0:
            raise fail(owner, "t", "a temperature > 0", t)
        self.t = float(t)
        self.reduction = check_reduction(reduction, owner)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return _logit_norm(type(self).__name__, logits, target, self.t, self.reduction)

    def scorer(self) -> nn.Module:
        """The natural scorer, maximum softmax probability (built-in ``msp``)."""
        from ood_core.builtin.scorers import MaxSoftmax

        return MaxSoftmax()
