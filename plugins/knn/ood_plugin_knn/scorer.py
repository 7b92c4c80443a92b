"""KNN: distance to the k-th nearest L2-normalised feature of the fit data (Sun et al., 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows, l2_normalize
from ood_core.head import FeatureScorer, refuse_encoder
from ood_core.reduction import compute_dtype
from ood_core.validation import check_embedding, check_positive_int, fail, fail_closed

#: default bank size limit: 100,000 rows (0.8 GB of float32 at D = 2048 in the exported graph)
DEFAULT_MAX_BANK = 100_000
#: sklearn.neighbors.NearestNeighbors keywords that only tune the search (the search here is exact)
_SEARCH_ONLY = ("algorithm", "leaf_size", "n_jobs", "n_neighbors", "radius")


class KNN(FeatureScorer):
    """Outlier score ``|z - z_(k)|_2``: distance of the normalised feature ``z = f / |f|_2`` to
    its ``k``-th nearest neighbour among the normalised features of the fit data.

    Sun, Ming, Zhu and Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML
    2022. Reads features ``(B, D)``. ``fit(x, y=None)`` stores the bank (rows with a label
    ``< 0`` are dropped); above ``max_bank`` rows an evenly spread subsample of ``max_bank``
    rows is kept, with a warning. Scoring is a matrix product and a top-k in the graph; the
    distance to the chosen neighbour is then computed as a difference, so it stays exact near
    0. ``normalize=False`` uses the raw features. pytorch-ood 0.4.0's keywords are accepted:
    ``encoder`` must be ``None`` and sklearn's search keywords (``algorithm``, ``leaf_size``,
    ``n_jobs``) are ignored; only the Euclidean metric exists. With ``head=`` (the classifier
    head), :meth:`predict` is its argmax.
    """

    needs_fit = True
    fit_state = ("bank", "bank_sq")
    bank: Tensor
    bank_sq: Tensor

    def __init__(
        self,
        encoder: Any = None,
        k: int = 50,
        normalize: bool = True,
        *,
        max_bank: int = DEFAULT_MAX_BANK,
        head: nn.Module | None = None,
        **knn_kwargs: Any,
    ) -> None:
        super().__init__(head=head)
        owner = type(self).__name__
        refuse_encoder(owner, encoder)
        self.k = check_positive_int(owner, "k", k)
        if not isinstance(normalize, bool):
            raise fail(owner, "normalize", "True or False", repr(normalize))
        self.normalize = normalize
        self.max_bank = check_positive_int(owner, "max_bank", max_bank)
        _check_search_keywords(owner, knn_kwargs)
        self.register_buffer("bank", torch.zeros(0, 0))
        self.register_buffer("bank_sq", torch.zeros(0))

    def _fit_begin(self) -> None:
        self._rows = BoundedRows(self.max_bank)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if y is not None:
            x = x[y >= 0]
        self._rows.add((l2_normalize(x) if self.normalize else x).to(self.bank.dtype))

    def _fit_end(self) -> None:
        rows = self._rows.bank(type(self).__name__, self.k)
        self.bank = rows
        self.bank_sq = (rows.double() ** 2).sum(1).to(rows.dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        x = check_embedding(type(self).__name__, "features", features, self.bank.shape[1])
        dtype = compute_dtype(x.dtype)
        z = x.to(dtype)
        if self.normalize:
            z = l2_normalize(z)
        bank = self.bank.to(dtype)
        # |z - b|^2 - |z|^2 ranks the bank; the k-th one's distance is then taken exactly
        rank = self.bank_sq.to(dtype)[None, :] - 2 * (z @ bank.T)
        kth = rank.topk(self.k, dim=1, largest=False).indices[:, -1]
        return fail_closed(torch.linalg.vector_norm(z - bank[kth], dim=1))


def _check_search_keywords(owner: str, kwargs: dict[str, Any]) -> None:
    """Accept sklearn's search-only keywords; refuse anything that changes the distance."""
    for key, value in kwargs.items():
        if key in _SEARCH_ONLY:
            continue
        if key == "metric" and value in ("minkowski", "euclidean", "l2"):
            continue
        if key == "p" and value == 2:
            continue
        if key == "metric_params" and value is None:
            continue
        raise fail(
            owner,
            key,
            "one of sklearn's search keywords (algorithm, leaf_size, n_jobs) or the Euclidean "
            "metric (metric='euclidean' or 'minkowski' with p=2): the distance is Euclidean",
            repr(value),
        )


__all__ = ["DEFAULT_MAX_BANK", "KNN"]
