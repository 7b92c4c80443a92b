"""GEN: the generalized entropy of the softmax posterior."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.arguments import check_positive
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed

#: probabilities are clamped to [EPS, 1 - EPS] so that p^gamma has a finite gradient at 0 and 1
EPS = 1e-7


class GEN(Scorer):
    """Generalized entropy ``G(x) = sum_{j in top-M} p_j^gamma (1 - p_j)^gamma`` (higher = more OOD).

    Liu, Lochman, Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection",
    CVPR 2023, eq. (3) with ``p = softmax(f(x))`` clamped to ``[1e-7, 1 - 1e-7]`` and the sum
    over the ``M`` largest probabilities (``M=None``: all classes; the paper uses ``M = 100`` on
    ImageNet). ``gamma`` in ``(0, inf)``, the paper's default 0.1. Classification ``(B, C)`` and
    segmentation ``(B, C, H, W)`` (per pixel); computed in at least fp32.

    Differs from pytorch-ood 0.4.0 (``GEN``, same keywords): the paper's sum, where 0.4.0 takes
    the mean over the ``M`` terms; the scores differ by the constant factor ``min(M, C)``, the
    ranking and every OOD metric are the same.
    """

    reads = "logits"

    def __init__(self, gamma: float = 0.1, M: int | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.gamma = check_positive(owner, "gamma", gamma)
        if M is not None and (isinstance(M, bool) or not isinstance(M, int) or M < 1):
            raise fail(owner, "M", "None or a positive integer (classes to sum over)", repr(M))
        self.M = M

    def forward(self, logits: Tensor) -> Tensor:
        x = check_float(type(self).__name__, "logits", logits, ranks=(2, 4), masks=True)
        p = torch.softmax(x.to(compute_dtype(x.dtype)), dim=1).clamp(EPS, 1 - EPS)
        if self.M is not None and self.M < p.shape[1]:
            p = torch.topk(p, self.M, dim=1).values
        return fail_closed((p.pow(self.gamma) * (1 - p).pow(self.gamma)).sum(dim=1))
