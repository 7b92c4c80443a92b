"""fDBD: mean distance to the decision boundaries of the linear head, over the distance to the
training mean."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.head import LinearHeadMeanScorer, linear_weights
from ood_core.validation import fail, fail_closed

_EPS = 1e-8


class fDBD(LinearHeadMeanScorer):  # noqa: N801 - pytorch-ood 0.4.0's class name
    """Outlier score ``-1/(C-1) sum_{c != k} |l_k - l_c| / (|w_k - w_c| |z - mu|)``.

    Liu and Qin, "Fast Decision Boundary based Out-of-Distribution Detector", ICML 2024.
    ``l = W z + b`` are the logits of the linear head, ``k = argmax l`` the predicted class,
    ``|l_k - l_c| / |w_k - w_c|`` the distance of ``z`` to the boundary between ``k`` and ``c``
    and ``mu`` the mean of the fit features (labels are not used; rows labelled ``< 0`` are
    dropped). ``head`` must be an ``nn.Linear`` (or expose ``weight`` (C, D) and ``bias`` (C,))
    with at least two classes. ``|z - mu|`` is clamped at 1e-8.
    """

    fit_state = ("mean", "boundary_norms")
    boundary_norms: Tensor

    def __init__(self, encoder: Any = None, head: nn.Module | None = None) -> None:
        super().__init__(encoder, head)
        w, _ = linear_weights(type(self).__name__, self.head)
        if w.shape[0] < 2:
            raise fail(type(self).__name__, "head", "a head with at least 2 classes", "1 class")
        self.register_buffer("boundary_norms", torch.zeros(0, 0))

    def _fit_end(self) -> None:
        super()._fit_end()
        w = linear_weights(type(self).__name__, self.head)[0].double()
        sq = (w**2).sum(1)
        gram = (sq[:, None] + sq[None, :] - 2 * (w @ w.T)).clamp_min(0)
        norms = gram.sqrt().fill_diagonal_(1.0)  # the diagonal's numerator is 0
        self.boundary_norms = norms.to(self.boundary_norms.dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        z, logits = self._logits(features)
        top, k = logits.max(dim=1)
        boundary = ((top[:, None] - logits).abs() / self.boundary_norms.to(z.dtype)[k]).sum(1)
        spread = torch.linalg.vector_norm(z - self.mean.to(z.dtype), dim=1).clamp_min(_EPS)
        return fail_closed(-boundary / ((logits.shape[1] - 1) * spread))


__all__ = ["fDBD"]
