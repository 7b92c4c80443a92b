"""SHE: inner product of the features with the stored pattern of the predicted class."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.head import (
    FeatureScorer,
    apply_head,
    check_head_width,
    refuse_encoder,
    require_head,
)
from ood_core.reduction import compute_dtype
from ood_core.statistics import ClassStatistics
from ood_core.validation import check_embedding, fail, fail_closed


class SHE(FeatureScorer):
    """Outlier score ``-<z, S_k>`` with ``k = argmax head(z)``.

    Zhang et al., "Out-of-Distribution Detection based on In-Distribution Data Patterns
    Memorization with Modern Hopfield Energy", ICLR 2023 (SHE, the simplified Hopfield energy).
    The pattern ``S_c`` of class ``c`` is the mean feature of the fit samples labelled ``c`` that
    the head classifies correctly. ``fit(x, y)`` needs labels (rows labelled ``< 0`` are
    dropped); every class of the head needs a correctly classified sample. ``head`` (required)
    maps features ``(B, D)`` to logits ``(B, C)``.
    """

    needs_fit = True
    fit_needs_labels = True
    fit_state = ("patterns",)
    patterns: Tensor

    def __init__(self, encoder: Any = None, head: nn.Module | None = None) -> None:
        owner = type(self).__name__
        refuse_encoder(owner, encoder)
        super().__init__(head=require_head(owner, head))
        self.register_buffer("patterns", torch.zeros(0, 0))

    def _fit_begin(self) -> None:
        self._stats: ClassStatistics | None = None

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if self._stats is None:
            check_head_width(f"{type(self).__name__}.fit", self.head, x.shape[1])
        logits = apply_head(self.head, x)
        if self._stats is None:
            self._stats = ClassStatistics(logits.shape[1], scatter=False, owner=type(self).__name__)
        top = int(y.max()) if y.numel() else -1
        if top >= logits.shape[1]:
            owner = f"{type(self).__name__}.fit"
            raise fail(owner, "y", f"labels below the head's {logits.shape[1]} classes", str(top))
        correct = (logits.argmax(dim=1) == y) & (y >= 0)
        self._stats.update(x[correct], y[correct])

    def _fit_end(self) -> None:
        owner = type(self).__name__
        missing = (self._stats.counts == 0).nonzero().flatten().tolist()
        if missing:
            raise fail(
                f"{owner}.fit",
                "y",
                "labels with a correctly classified sample for every class of the head (the "
                "pattern of a class is their mean)",
                f"none for class(es) {missing[:10]}",
            )
        self.patterns = self._stats.finalize().means.to(self.patterns.dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        x = check_embedding(type(self).__name__, "features", features, self.patterns.shape[1])
        z = x.to(compute_dtype(x.dtype))
        k = apply_head(self.head, z).argmax(dim=1)
        return fail_closed(-(z * self.patterns.to(z.dtype)[k]).sum(dim=1))


__all__ = ["SHE"]
