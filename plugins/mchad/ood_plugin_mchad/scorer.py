"""The MCHAD scorer: squared distance to the closest class centre."""

from __future__ import annotations

from torch import Tensor

from ood_core.nearest_center import NearestCenterScorer, check_positive_int


class MCHADScorer(NearestCenterScorer):
    """Outlier score ``min_k |f(x) - mu_k|^2``: squared distance to the closest class centre.

    Kirchheim et al., "Multi-Class Hypersphere Anomaly Detection", ICPR 2022: a sample is an
    anomaly when its embedding ``f(x)`` lies outside every class hypersphere, so the smallest
    squared distance to a centre ``mu_k`` is the outlier score (higher = more OOD) and
    :meth:`predict` is the closest centre (argmin). Reads embeddings ``(B, D)``; the centres
    ``(K, D)`` live in the persistent buffer ``centers``.

    Create it from a trained :class:`~ood_plugin_mchad.MCHADLoss` with ``loss.scorer()`` (a copy
    of its centres); ``MCHADScorer(n_classes, n_dim)`` starts from zero centres, to be replaced
    by ``load_state_dict``.
    """

    def __init__(self, n_classes: int, n_dim: int, centers: Tensor | None = None) -> None:
        owner = type(self).__name__
        n_classes = check_positive_int(owner, "n_classes", n_classes)
        n_dim = check_positive_int(owner, "n_dim", n_dim)
        super().__init__(n_classes, n_dim, centers)
