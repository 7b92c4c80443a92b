"""The II scorer: squared distance to the closest class mean."""

from __future__ import annotations

from torch import Tensor

from ood_core.nearest_center import ClassMeanScorer


class IIScorer(ClassMeanScorer):
    """Outlier score ``min_k |f(x) - mu_k|^2``: squared distance to the closest class mean.

    Hassen & Chan, "Learning a Neural-network-based Representation for Open Set Recognition",
    SDM 2020: an embedding far from every class mean ``mu_k`` is an outlier (higher = more
    OOD); :meth:`predict` is the closest mean (argmin). Reads embeddings ``(B, D)``; the means
    ``(C, D)`` live in the persistent buffer ``centers``.

    Create it from a trained :class:`~ood_plugin_ii.IILoss` with ``loss.scorer()`` (a copy of
    its running means). The running means average embeddings from the whole of training, while
    the embedding kept moving; the paper computes the means over the training data after
    training, which :meth:`fit` does (float64 sums and counts, any number of batches)::

        scorer = loss.scorer().fit(loader_of_(embedding, y))

    ``IIScorer(n_classes, n_embedding)`` starts at zero means, to be replaced by :meth:`fit` or
    ``load_state_dict``.
    """

    def __init__(self, n_classes: int, n_embedding: int, centers: Tensor | None = None) -> None:
        super().__init__(n_classes, n_embedding, centers)
