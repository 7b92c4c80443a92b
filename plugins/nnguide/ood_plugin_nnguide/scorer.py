"""NNGuide: the energy score guided by the similarity to an energy-scaled bank of ID features."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows, l2_normalize
from ood_core.head import (
    FeatureScorer,
    apply_head,
    check_head_width,
    refuse_encoder,
    require_head,
)
from ood_core.reduction import compute_dtype
from ood_core.validation import check_embedding, check_positive_int, fail_closed

#: default bank size limit (the paper itself subsamples, e.g. 1% of ImageNet)
DEFAULT_MAX_BANK = 100_000


class NNGuide(FeatureScorer):
    """Outlier score ``-E(x) * mean_{top k} <f(x)/|f(x)|, E(z) f(z)/|f(z)|>``.

    Park, Jung and Teoh, "Nearest Neighbor Guidance for Out-of-Distribution Detection", ICCV
    2023. ``E = log sum_c exp(l_c)`` is the energy of the head's logits; the bank holds the fit
    features, L2-normalised and scaled by their energy; the guidance is the mean of the ``k``
    largest inner products of the normalised input with the bank. Reads features ``(B, D)``;
    ``head`` (required) maps them to logits. Rows labelled ``< 0`` are dropped; above
    ``max_bank`` rows an evenly spread subsample is kept, with a warning.
    """

    needs_fit = True
    fit_state = ("bank",)
    bank: Tensor

    def __init__(
        self,
        encoder: Any = None,
        head: nn.Module | None = None,
        k: int = 10,
        *,
        max_bank: int = DEFAULT_MAX_BANK,
    ) -> None:
        owner = type(self).__name__
        refuse_encoder(owner, encoder)
        super().__init__(head=require_head(owner, head))
        self.k = check_positive_int(owner, "k", k)
        self.max_bank = check_positive_int(owner, "max_bank", max_bank)
        self.register_buffer("bank", torch.zeros(0, 0))

    def _fit_begin(self) -> None:
        self._rows = BoundedRows(self.max_bank)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if self._rows.seen == 0:
            check_head_width(f"{type(self).__name__}.fit", self.head, x.shape[1])
        if y is not None:
            x = x[y >= 0]
        energy = torch.logsumexp(apply_head(self.head, x), dim=1)
        self._rows.add((l2_normalize(x) * energy[:, None]).to(self.bank.dtype))

    def _fit_end(self) -> None:
        rows = self._rows.bank(type(self).__name__, self.k)
        self.bank = rows

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        x = check_embedding(type(self).__name__, "features", features, self.bank.shape[1])
        z = x.to(compute_dtype(x.dtype))
        energy = torch.logsumexp(apply_head(self.head, z), dim=1)
        similarity = l2_normalize(z) @ self.bank.to(z.dtype).T
        guidance = similarity.topk(self.k, dim=1).values.mean(dim=1)
        return fail_closed(-(guidance * energy))


__all__ = ["DEFAULT_MAX_BANK", "NNGuide"]
