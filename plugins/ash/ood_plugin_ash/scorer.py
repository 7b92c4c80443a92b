"""ASH: prune the lowest activations per sample, binarise or rescale the rest, score the energy."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.shaping import ShapingScorer, check_fraction, kept_count
from ood_core.validation import fail

#: ASH's variants: prune only, prune and binarise, prune and rescale
VARIANTS = ("ash-p", "ash-b", "ash-s")


class ASH(ShapingScorer):
    """Outlier score ``-log sum_c exp(head(pool(ash(x)))_c)``; nothing to fit.

    Djurisic, Bozanic, Ashok and Liu, "Extremely Simple Activation Shaping for
    Out-of-Distribution Detection", ICLR 2023. Per sample, of the ``n = C H W`` activations the
    ``k = n - round(n * percentile)`` largest are kept and the rest set to zero (ash-p); ash-b
    sets each kept one to ``s1 / k`` (``s1`` the sum of all activations before pruning), ash-s
    multiplies the pruned map by ``exp(s1 / s2)`` (``s2`` the sum after pruning). Reads feature
    maps ``(B, C, H, W)`` (or features ``(B, C)``); ``head`` maps their global average to
    logits (see :mod:`ood_core.shaping`). Meant for non-negative (post-ReLU) activations.
    """

    def __init__(
        self,
        backbone: Any = None,
        head: nn.Module | None = None,
        variant: str = "ash-s",
        percentile: float = 0.65,
        detector: Any = None,
    ) -> None:
        super().__init__(backbone, head, detector)
        owner = type(self).__name__
        if variant not in VARIANTS:
            raise fail(owner, "variant", f"one of {', '.join(VARIANTS)}", repr(variant))
        self.variant = variant
        self.percentile = check_fraction(owner, "percentile", percentile, below_one=True)

    def _shape(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        k = kept_count(type(self).__name__, "percentile", flat.shape[1], self.percentile)
        top, index = flat.topk(k, dim=1)
        total = flat.sum(dim=1, keepdim=True)
        if self.variant == "ash-b":
            top = (total / k).expand_as(top)
        pruned = torch.zeros_like(flat).scatter(1, index, top)
        if self.variant == "ash-s":
            pruned = pruned * torch.exp(total / top.sum(dim=1, keepdim=True))
        return pruned.reshape(x.shape)


__all__ = ["ASH", "VARIANTS"]
