"""NCI: alignment of the centred feature with the predicted class's weight vector."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.arguments import check_real
from ood_core.head import LinearHeadMeanScorer, linear_weights
from ood_core.validation import fail_closed

_EPS = 1e-12


class NCI(LinearHeadMeanScorer):
    """Outlier score ``-<h - mu_G, w_k> / |h - mu_G|_2 - alpha |h|_1``.

    Liu and Qin, "Detecting Out-of-Distribution Through the Lens of Neural Collapse", CVPR 2025.
    ``h`` are the features, ``mu_G`` their global mean over the fit data (labels are not used;
    rows labelled ``< 0`` are dropped), ``k`` the class the linear head predicts and ``w_k`` its
    weight vector; ``alpha >= 0`` weighs the feature-norm penalty (0: none). ``head`` must be an
    ``nn.Linear`` (or expose ``weight`` (C, D) and ``bias`` (C,)). ``|h - mu_G|`` is clamped at
    1e-12, so a feature at the mean scores 0 rather than NaN.
    """

    def __init__(
        self, encoder: Any = None, head: nn.Module | None = None, alpha: float = 0.0
    ) -> None:
        super().__init__(encoder, head)
        self.alpha = check_real(type(self).__name__, "alpha", alpha, minimum=0.0)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        h, logits = self._logits(features)
        w, _ = linear_weights(type(self).__name__, self.head)
        centred = h - self.mean.to(h.dtype)
        norm = torch.linalg.vector_norm(centred, dim=1).clamp_min(_EPS)
        score = -(centred * w.to(h.dtype)[logits.argmax(dim=1)]).sum(1) / norm
        if self.alpha > 0:
            score = score - self.alpha * h.abs().sum(1)
        return fail_closed(score)


__all__ = ["NCI"]
