"""The distances and the score Class Anchor Clustering shares between its loss and its scorer.

Both :mod:`ood_plugin_cac.loss` and :mod:`ood_plugin_cac.scorer` import from here (and neither
from the other), so the two modules load in any order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.centers import squared_distances
from ood_core.reduction import compute_dtype


def anchor_distances(z: Tensor, anchors: Tensor) -> Tensor:
    """Euclidean distances ``|z_i - c_k|`` ``(B, C)`` of embeddings to anchors, in >= fp32.

    The square root is taken of the squared distances clamped at the smallest normal number, so
    an embedding exactly on an anchor has distance ~0 and a zero (not NaN) gradient.
    """
    dtype = compute_dtype(z.dtype)
    d2 = squared_distances(z.to(dtype), anchors.to(dtype))
    return d2.clamp_min(torch.finfo(dtype).tiny).sqrt()


def rejection_score(distances: Tensor) -> Tensor:
    """CAC outlier score ``min_c d_c (1 - softmin(d)_c)`` of Euclidean distances ``(B, C)``.

    Miller et al., "Class Anchor Clustering: a Loss for Distance-based Open Set Recognition",
    WACV 2021.
    """
    d = distances.to(compute_dtype(distances.dtype))
    return (d * (1 - torch.softmax(-d, dim=1))).amin(dim=1)


__all__ = ["anchor_distances", "rejection_score"]
