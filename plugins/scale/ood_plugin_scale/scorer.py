"""SCALE: scale all activations by a per-sample factor from the top-k share, score the energy."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.shaping import ShapingScorer, check_fraction, kept_count


class SCALE(ShapingScorer):
    """Outlier score ``-log sum_c exp(head(pool(x * exp(s1 / s2)))_c)``; nothing to fit.

    Xu, Chen, Franchi and Yao, "Scaling for Training Time and Post-hoc Out-of-distribution
    Detection Enhancement", ICLR 2024. Per sample, ``s1`` is the sum of all ``n = C H W``
    activations and ``s2`` the sum of the ``k = n - round(n * percentile)`` largest; unlike
    ASH-S nothing is pruned. Reads feature maps ``(B, C, H, W)`` (or features ``(B, C)``, where
    the paper applies it, after pooling); ``head`` maps their global average to logits (see
    :mod:`ood_core.shaping`). Meant for non-negative (post-ReLU) activations.
    """

    def __init__(
        self,
        backbone: Any = None,
        head: nn.Module | None = None,
        percentile: float = 0.65,
        detector: Any = None,
    ) -> None:
        super().__init__(backbone, head, detector)
        self.percentile = check_fraction(
            type(self).__name__, "percentile", percentile, below_one=True
        )

    def _shape(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        k = kept_count(type(self).__name__, "percentile", flat.shape[1], self.percentile)
        ratio = flat.sum(dim=1) / flat.topk(k, dim=1).values.sum(dim=1)
        return x * torch.exp(ratio).reshape((-1,) + (1,) * (x.dim() - 1))


__all__ = ["SCALE"]
