"""Nearest-centre scoring: the outlier score is the squared distance to the closest class centre.

Shared by the centre-based methods (Deep SVDD, II loss, center loss, ...): a plugin subclasses
:class:`NearestCenterScorer`, gives it the constructor keywords of its loss and a docstring
with the paper, and its loss's ``scorer()`` passes a copy of the learned centres. The argument
checks these methods share (``check_positive_int``, ``check_embedding``) are in
:mod:`ood_core.validation`; importing them from here still works.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.centers import squared_distances
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import (
    check_embedding,
    check_float,
    check_positive_int,
    fail,
    fail_closed,
)

__all__ = [
    "ClassMeanScorer",
    "NearestCenterScorer",
    "check_embedding",
    "check_positive_int",
]


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
        """Outlier scores ``(B,)``: the squared distance to the closest centre (NaN: ``+inf``)."""
        return fail_closed(self.distances(embedding).amin(dim=1))

    def predict(self, embedding: Tensor) -> Tensor:
        """Class decision ``(B,)`` (int64): the index of the closest centre."""
        return self.distances(embedding).argmin(dim=1)


class ClassMeanScorer(NearestCenterScorer):
    """A :class:`NearestCenterScorer` whose centres are class means, recomputed by :meth:`fit`.

    ``fit(embeddings, labels)``, or ``fit(batches)`` of ``(embedding, y)`` pairs, sets
    ``mu_k = 1/n_k sum_{y_i = k} z_i`` from float64 per-class sums and counts (memory
    ``O(K D)``, whatever the number of samples); rows with ``y < 0`` (OOD) are skipped and every
    class needs a sample. It scores before fit too (centres copied from a loss); fitting after
    training replaces centres that went stale while the embedding moved. ``fit_counts`` holds
    the samples per class of the last fit.
    """

    refits = True
    fit_needs_labels = True

    def _fit_begin(self) -> None:
        k, d = self.centers.shape
        self._sums = torch.zeros(k, d, dtype=torch.float64, device=self.centers.device)
        self._counts = torch.zeros(k, dtype=torch.float64, device=self.centers.device)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        owner = type(self).__name__
        k, d = self.centers.shape
        if x.dim() != 2 or x.shape[1] != d:
            raise fail(f"{owner}.fit", "x", f"embeddings of shape (B, {d})", x)
        assert y is not None  # fit_needs_labels: the template requires labels
        if y.numel() and int(y.max()) >= k:
            raise fail(
                f"{owner}.fit", "y", f"class labels 0..{k - 1} (or < 0 for OOD)", f"{int(y.max())}"
            )
        y = y.long()  # any integer dtype (index_add_ takes int64)
        known = (y >= 0).to(torch.float64)
        index = torch.where(y >= 0, y, torch.zeros_like(y))
        self._sums.index_add_(0, index, x * known[:, None])
        self._counts.index_add_(0, index, known)

    def _fit_end(self) -> None:
        sums, counts = self._sums, self._counts
        del self._sums, self._counts
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"{type(self).__name__}.fit: argument 'y' has no sample of class(es) {empty}; "
                "every class needs at least one labelled embedding (the centres are unchanged)"
            )
        self.centers.copy_((sums / counts[:, None]).to(self.centers.dtype))
        self.fit_counts = counts
