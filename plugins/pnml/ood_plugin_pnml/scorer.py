"""pNML: the single-layer predictive normalised maximum likelihood regret."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.arguments import check_positive
from ood_core.bank import l2_normalize
from ood_core.head import (
    FeatureScorer,
    apply_head,
    check_head_width,
    refuse_encoder,
    require_head,
)
from ood_core.reduction import compute_dtype
from ood_core.statistics import SingularCovarianceWarning
from ood_core.validation import check_embedding, fail, fail_closed


class PNML(FeatureScorer):
    """Outlier score ``log(sum_c p_c / (p_c + (1 - p_c) p_c^g)) / log C``, ``g = q / (1 + q)``.

    Bibas, Feder and Hassner, "Single Layer Predictive Normalized Maximum Likelihood for
    Out-of-Distribution Detection", NeurIPS 2021. ``z`` is the L2-normalised feature, ``p =
    softmax(head(z))`` (clamped to ``[eps, 1 - eps]``), ``q = z^T (X^T X)^+ z`` with ``X`` the
    normalised fit features (rows labelled ``< 0`` dropped) and ``C >= 2`` the number of
    classes. The regret lies in ``[0, 1]``: 0 for a sample in the span the fit data cover well.
    ``X^T X`` is summed in float64 over batches; when it is singular (fewer samples than
    dimensions) its pseudo-inverse is the method's choice and a warning says so.
    """

    needs_fit = True
    fit_state = ("projector",)
    projector: Tensor
    fit_sums = ("_gram",)  # summed over torch.distributed ranks

    def __init__(
        self, encoder: Any = None, head: nn.Module | None = None, eps: float = 1e-12
    ) -> None:
        owner = type(self).__name__
        refuse_encoder(owner, encoder)
        super().__init__(head=require_head(owner, head))
        self.eps = check_positive(owner, "eps", eps)
        if self.eps >= 0.5:
            raise fail(
                owner, "eps", "below 0.5 (probabilities are clamped to [eps, 1 - eps])", repr(eps)
            )
        self.register_buffer("projector", torch.zeros(0, 0))

    def _fit_begin(self) -> None:
        self._gram: Tensor | None = None

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        z = l2_normalize(x if y is None else x[y >= 0])
        gram = z.T @ z
        self._gram = gram if self._gram is None else self._gram + gram

    def _fit_end(self) -> None:
        owner = type(self).__name__
        gram = self._gram
        width = gram.shape[0]
        check_head_width(f"{owner}.fit", self.head, width)
        classes = apply_head(self.head, torch.zeros(1, width, dtype=torch.float64)).shape[1]
        if classes < 2:
            raise fail(
                owner, "head", "a head with at least 2 classes (the regret divides by log C)", "1"
            )
        rank = int(torch.linalg.matrix_rank(gram, hermitian=True))
        if rank == 0:
            raise fail(f"{owner}.fit", "y", "at least one ID sample (label >= 0)", "none")
        if rank < width:
            warnings.warn(
                f"{owner}.fit: the Gram matrix of the fit features is singular (rank {rank} of "
                f"{width}); using its pseudo-inverse, so directions the fit data do not span "
                "add no regret",
                SingularCovarianceWarning,
                stacklevel=4,
            )
        self.projector = torch.linalg.pinv(gram, hermitian=True).to(self.projector.dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        x = check_embedding(type(self).__name__, "features", features, self.projector.shape[0])
        z = l2_normalize(x.to(compute_dtype(x.dtype)))
        p = torch.softmax(apply_head(self.head, z), dim=1).clamp(self.eps, 1 - self.eps)
        q = ((z @ self.projector.to(z.dtype)) * z).sum(dim=1)
        g = (q / (1 + q))[:, None]
        regret = torch.log((p / (p + (1 - p) * p.pow(g))).sum(dim=1))
        return fail_closed(regret / math.log(p.shape[1]))


__all__ = ["PNML"]
