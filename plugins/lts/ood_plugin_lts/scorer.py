"""LTS: scale the head's logits by a per-sample factor from the top share of the features."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.head import apply_head
from ood_core.shaping import ShapingScorer, check_fraction


class LTS(ShapingScorer):
    """Outlier score ``-log sum_c exp(S(z) head(z)_c)``, ``S(z) = (s1 / s2)^2``; nothing to fit.

    Djurisic, Liu and Nikolic, "Logit Scaling for Out-of-Distribution Detection", Machine
    Vision and Applications 2025. ``s1`` is the sum of the positive parts ``max(0, z_i)`` of the
    ``D`` features and ``s2`` that of the ``k = max(1, D - round(D (1 - p)))`` largest. A sample
    without a positive feature (``s2 = 0``) gets ``S = 0``: its logits carry no evidence.
    Reads features ``(B, D)``; ``head`` maps them to logits. ``k`` comes from the static
    width, so the scorer exports (torch.export, ONNX) at any batch size.
    """

    reads = "features"
    model_arg = "encoder"
    ranks = (2,)

    def __init__(
        self,
        encoder: Any = None,
        head: nn.Module | None = None,
        p: float = 0.05,
        detector: Any = None,
    ) -> None:
        super().__init__(encoder, head, detector)
        self.p = check_fraction(type(self).__name__, "p", p)

    def _logits(self, z: Tensor) -> Tensor:
        positive = z.clamp_min(0)
        n = z.shape[1]
        k = max(1, n - round(n * (1 - self.p)))
        s1 = positive.sum(dim=1)
        s2 = positive.topk(k, dim=1).values.sum(dim=1)
        ratio = torch.where(s2 > 0, s1 / s2.clamp_min(torch.finfo(z.dtype).tiny), 0.0)
        return apply_head(self.head, z) * ratio.square()[:, None]


__all__ = ["LTS"]
