"""Nearest-centre scoring: the outlier score is the squared distance to the closest class centre.

Shared by the centre-based methods (Deep SVDD, II loss, center loss, ...): a plugin subclasses
:class:`NearestCenterScorer`, gives it the constructor keywords of its loss and a docstring
with the paper, and its loss's ``scorer()`` passes a copy of the learned centres. The two
argument checks these methods share (shape keywords, ``(B, D)`` embeddings) live here too; they
would sit as well in :mod:`ood_core.validation`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.centers import squared_distances
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail


def check_positive_int(owner: str, arg: str, value: object) -> int:
    """``value`` must be a positive ``int`` (not a bool); returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(owner, arg, "a positive integer", repr(value))
    return value


def check_embedding(owner: str, arg: str, x: object, n_features: int) -> Tensor:
    """``x`` must be a floating ``(B, n_features)`` tensor without NaN (see ``check_float``)."""
    x = check_float(owner, arg, x, ranks=(2,))
    if x.shape[1] != n_features:
        raise fail(owner, arg, f"a tensor of shape (B, {n_features})", x)
    return x


class NearestCenterScorer(Scorer):
    """Outlier score ``min_k |z - mu_k|^2``, the squared distance to the closest centre.

    Reads embeddings ``z`` ``(B, D)`` and keeps the centres ``mu`` ``(K, D)`` in the persistent
    buffer ``centers`` (zeros unless given; a given tensor is copied and detached).
    :meth:`predict` is the closest centre (argmin). Distances are computed in at least fp32 with
    the broadcast difference of :func:`ood_core.centers.squared_distances`, so the scorer
    compiles and exports at any batch size.
    """

    reads = "embedding"
    centers: Tensor

    def __init__(self, n_centers: int, n_features: int, centers: Tensor | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        shape = (
            check_positive_int(owner, "n_centers", n_centers),
            check_positive_int(owner, "n_features", n_features),
        )
        if centers is None:
            centers = torch.zeros(shape)
        centers = check_float(owner, "centers", centers, ranks=(2,))
        if tuple(centers.shape) != shape:
            raise fail(owner, "centers", f"a tensor of shape {shape}", centers)
        self.register_buffer("centers", centers.detach().clone())

    def distances(self, embedding: Tensor) -> Tensor:
        """Squared distances ``(B, K)`` of ``embedding`` ``(B, D)`` to every centre."""
        z = check_embedding(type(self).__name__, "embedding", embedding, self.centers.shape[1])
        dtype = compute_dtype(z.dtype)
        return squared_distances(z.to(dtype), self.centers.to(dtype))

    def forward(self, embedding: Tensor) -> Tensor:
        """Outlier scores ``(B,)``: the squared distance to the closest centre."""
        return self.distances(embedding).amin(dim=1)

    def predict(self, embedding: Tensor) -> Tensor:
        """Class decision ``(B,)`` (int64): the index of the closest centre."""
        return self.distances(embedding).argmin(dim=1)
