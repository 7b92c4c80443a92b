"""Class Anchor Clustering: fixed class anchors, Euclidean distances, anchor and tuplet terms."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.centers import ClassCenters
from ood_core.labels import is_known, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import compute_dtype, masked_mean
from ood_core.validation import check_classification, check_embedding, check_positive_int, fail
from ood_plugin_cac.anchors import anchor_distances, rejection_score
from ood_plugin_cac.scorer import CACScorer

__all__ = ["CACLoss", "anchor_distances", "rejection_score"]


class CACLoss(Loss):
    """Class Anchor Clustering: pulls embeddings to their fixed class anchor, away from the others.

    The anchors ``c_k = magnitude * e_k`` are scaled unit vectors in a ``C``-dimensional space
    (one dimension per class) and are not trained. With the Euclidean distances
    ``d_k = |f(x) - c_k|`` (:meth:`distance`), the loss of an ID sample with class ``y`` is::

        L(x, y) = alpha * d_y + log(1 + sum_{k != y} exp(d_y - d_k))

    averaged over the ID samples; samples with target ``< 0`` are ignored. The tuplet term is
    computed as a log-sum-exp, exact for any distances. The outlier score (scorer ``cac``,
    :meth:`score`) is ``min_k d_k (1 - softmin(d)_k)``, the paper's rejection score; the class is
    the closest anchor.

    Miller et al., "Class Anchor Clustering: a Loss for Distance-based Open Set Recognition",
    WACV 2021.

    Differs from pytorch-ood 0.4.0: the tuplet term sums over every class except the true one
    (0.4.0 always uses classes ``0..C-2``: it includes the true class and never the last one);
    :meth:`distance` gives Euclidean distances and :meth:`score` is
    ``min_k d_k (1 - softmin(d)_k)`` on them, as in the paper (0.4.0: squared distances and
    ``-max_k``, which ranks samples differently); no clamp of ``d_y - d_k`` at 50 (0.4.0's clamp
    zeroes the gradient of far-off samples); bad input raises ``ValueError``.
    """

    roles = {"distances": "distances", "target": "target"}

    def __init__(self, n_classes: int, magnitude: float = 1.0, alpha: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.n_classes = check_positive_int(owner, "n_classes", n_classes)
        self.magnitude = magnitude
        self.alpha = alpha
        self._centers = ClassCenters(n_classes, n_classes, fixed=True)
        with torch.no_grad():
            self._centers._params.copy_(torch.eye(n_classes) * magnitude)

    @property
    def centers(self) -> ClassCenters:
        """The anchors ``c_k`` ``(C, C)`` (``centers.params``)."""
        return self._centers

    def distance(self, x: Tensor) -> Tensor:
        """Euclidean distances ``(B, C)`` of embeddings ``x`` ``(B, C)`` to the anchors."""
        x = check_embedding(type(self).__name__, "x", x, self.n_classes)
        return anchor_distances(x, self._centers.params)

    @staticmethod
    def score(distance: Tensor) -> Tensor:
        """Outlier scores ``(B,)``, ``min_k d_k (1 - softmin(d)_k)``, of Euclidean distances."""
        return rejection_score(distance)

    def forward(self, distances: Tensor, target: Tensor) -> Tensor:
        """Loss of the distances ``(B, C)`` (from :meth:`distance`) with targets ``(B,)``."""
        owner = type(self).__name__
        distances, target = check_classification(
            owner, distances, target, arg="distances", ranks=(2,)
        )
        if distances.shape[1] != self.n_classes:
            raise fail(owner, "distances", f"a tensor of shape (B, {self.n_classes})", distances)
        d = distances.to(compute_dtype(distances.dtype))
        y = known_or_zero(target)[:, None]
        d_true = d.gather(1, y)
        is_true = y == torch.arange(self.n_classes, device=d.device)
        # log(1 + sum_{k != y} exp(d_y - d_k)) = logsumexp over [0, (d_y - d_k)_{k != y}]
        diffs = torch.where(is_true, torch.full_like(d, float("-inf")), d_true - d)
        tuplet = torch.logsumexp(torch.cat([torch.zeros_like(d_true), diffs], dim=1), dim=1)
        return masked_mean(self.alpha * d_true.squeeze(1) + tuplet, is_known(target))

    def scorer(self) -> CACScorer:
        """A ``cac`` scorer holding a copy of the anchors."""
        return CACScorer(self.n_classes, anchors=self._centers.params)
