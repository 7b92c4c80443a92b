"""The CAC scorer: the rejection score of Class Anchor Clustering."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.scoring import Scorer
from ood_core.validation import (
    check_embedding,
    check_float,
    check_positive_int,
    fail,
    fail_closed,
)
from ood_plugin_cac.anchors import anchor_distances, rejection_score


class CACScorer(Scorer):
    """Outlier score ``min_k d_k (1 - softmin(d)_k)`` with ``d_k = |f(x) - c_k|`` (Euclidean).

    Miller et al., "Class Anchor Clustering: a Loss for Distance-based Open Set Recognition",
    WACV 2021: the rejection score ``gamma = d * (1 - softmin(d))`` is small only when the
    embedding is close to one anchor and far from the others; its minimum is the outlier score
    (higher = more OOD). :meth:`predict` is the closest anchor. Reads embeddings ``(B, C)`` in
    the anchor space; the anchors ``(C, C)`` live in the persistent buffer ``anchors``.

    Create it from a trained :class:`~ood_plugin_cac.CACLoss` with ``loss.scorer()``;
    ``CACScorer(n_classes, magnitude)`` builds the loss's anchors ``magnitude * I``.

    Differs from pytorch-ood 0.4.0 (``CACLoss.score``): Euclidean, not squared, distances and
    ``min_k`` of the rejection score, as in the paper, instead of ``-max_k`` on squared
    distances.
    """

    reads = "embedding"
    anchors: Tensor

    def __init__(
        self, n_classes: int, magnitude: float = 1.0, anchors: Tensor | None = None
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        n = check_positive_int(owner, "n_classes", n_classes)
        if anchors is None:
            anchors = torch.eye(n) * magnitude
        anchors = check_float(owner, "anchors", anchors, ranks=(2,))
        if tuple(anchors.shape) != (n, n):
            raise fail(owner, "anchors", f"a tensor of shape ({n}, {n})", anchors)
        self.register_buffer("anchors", anchors.detach().clone())

    def distances(self, embedding: Tensor) -> Tensor:
        """Euclidean distances ``(B, C)`` of ``embedding`` ``(B, C)`` to the anchors."""
        z = check_embedding(type(self).__name__, "embedding", embedding, self.anchors.shape[1])
        return anchor_distances(z, self.anchors)

    def forward(self, embedding: Tensor) -> Tensor:
        """Outlier scores ``(B,)``."""
        return fail_closed(rejection_score(self.distances(embedding)))

    def predict(self, embedding: Tensor) -> Tensor:
        """Class decision ``(B,)`` (int64): the closest anchor."""
        return self.distances(embedding).argmin(dim=1)
