"""The center-loss scorer: squared distance to the closest class centre."""

from __future__ import annotations

from torch import Tensor

from ood_core.nearest_center import ClassMeanScorer


class CenterScorer(ClassMeanScorer):
    """Outlier score ``min_k |f(x) - mu_k|^2``: squared distance to the closest class centre.

    For embeddings trained with the center loss (Wen et al., "A Discriminative Feature
    Learning Approach for Deep Face Recognition", ECCV 2016), which clusters each class around
    its centre ``mu_k``: an embedding far from every centre is an outlier (higher = more OOD);
    :meth:`predict` is the closest centre (argmin). Reads embeddings ``(B, D)``; the centres
    ``(C, D)`` live in the persistent buffer ``centers``.

    Create it from a trained :class:`~ood_plugin_center.CenterLoss` with ``loss.scorer()`` (a
    copy of its centres). :meth:`fit` replaces the centres by the class means of embeddings
    (float64 sums and counts, any number of batches), the quantity Wen et al.'s centre update
    tracks; after training::

        scorer = loss.scorer().fit(loader_of_(embedding, y))

    ``CenterScorer(n_classes, n_dim)`` starts at zero centres, to be replaced by :meth:`fit` or
    ``load_state_dict``.
    """

    def __init__(self, n_classes: int, n_dim: int, centers: Tensor | None = None) -> None:
        super().__init__(n_classes, n_dim, centers)
