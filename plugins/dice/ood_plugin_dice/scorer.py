"""DICE: mask the classifier weights that contribute least on ID data, score the energy."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.functional import energy
from ood_core.head import LinearHeadMeanScorer, linear_from_weights, linear_weights
from ood_core.shaping import check_detector, check_fraction, quantile
from ood_core.validation import fail, fail_closed


class DICE(LinearHeadMeanScorer):
    """Outlier score ``-log sum_c exp((M * W) z + b)_c`` with a fitted mask ``M``.

    Sun and Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection", ECCV 2022.
    The contribution of weight ``W_cj`` is ``u_j W_cj``, ``u`` the mean of the ID fit features
    (float64 sums; rows labelled ``< 0`` dropped); the fraction ``p`` of weights with the lowest
    contribution is masked out: ``M_cj = [u_j W_cj > q_p]``, ``q_p`` the ``p``-quantile of all
    contributions (linear interpolation). Reads features ``(B, D)``; ``head`` is the linear
    classifier (``nn.Linear`` or ``weight`` and ``bias``; pytorch-ood's ``w``, ``b`` build one).
    """

    fit_state = ("mean", "masked_weight")
    masked_weight: Tensor

    def __init__(
        self,
        encoder: Any = None,
        w: Tensor | None = None,
        b: Tensor | None = None,
        p: float | None = None,
        detector: Any = None,
        *,
        head: nn.Module | None = None,
    ) -> None:
        owner = type(self).__name__
        if w is not None or b is not None:
            if head is not None:
                raise fail(owner, "head", "None when w and b are given (one head)", "a module")
            head = linear_from_weights(owner, w, b)
        super().__init__(encoder, head)
        if p is None:
            raise fail(
                owner, "p", "the fraction of weights to mask, in [0, 1) (paper: 0.9)", "None"
            )
        self.p = check_fraction(owner, "p", p, below_one=True)
        self.detector = check_detector(owner, detector)
        self.register_buffer("masked_weight", torch.zeros(0, 0))

    def _fit_end(self) -> None:
        super()._fit_end()
        w, _ = linear_weights(type(self).__name__, self.head)
        contribution = self.mean.double()[None, :] * w.double()
        threshold = quantile(contribution, self.p)
        self.masked_weight = torch.where(contribution > threshold, w.double(), 0.0).to(w.dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        z, _ = self._logits(features)
        _, b = linear_weights(type(self).__name__, self.head)
        logits = z @ self.masked_weight.to(z.dtype).T + b.to(z.dtype)
        scores = energy(logits) if self.detector is None else self.detector(logits)
        return fail_closed(scores)


__all__ = ["DICE"]
