"""Class centres: learnable or fixed centres, running (empirical) centres, squared distances."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ood_core.labels import is_known, known_or_zero


def squared_distances(z: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances ``d[n, k] = sum_j (z[n, j] - mu[k, j])^2``, shape ``(N, K)``.

    Written as the broadcast difference, which is exact near a centre and exports to ONNX;
    ``torch.cdist`` does not export, and the expanded ``|z|^2 - 2 z.mu + |mu|^2`` cancels
    catastrophically when ``z`` is close to ``mu``.
    """
    return ((z[:, None, :] - centers[None, :, :]) ** 2).sum(-1)


class ClassCenters(nn.Module):
    """``K`` class centres in a ``D``-dimensional space, learnable or fixed.

    Initialised from a standard normal distribution; calling the module returns
    :func:`squared_distances` of ``(N, D)`` inputs to the centres. The parameter is stored as
    ``_params`` so pytorch-ood 0.4.0 state dicts load unchanged.
    """

    def __init__(self, n_classes: int, n_features: int, fixed: bool = False) -> None:
        super().__init__()
        if int(n_classes) < 1 or int(n_features) < 1:
            raise ValueError(
                "ClassCenters: arguments 'n_classes' and 'n_features' must be positive integers, "
                f"got n_classes={n_classes!r}, n_features={n_features!r}"
            )
        self._params = nn.Parameter(torch.randn(int(n_classes), int(n_features)))
        self._params.requires_grad_(not fixed)

    @property
    def params(self) -> Tensor:
        """The centres, shape ``(K, D)``."""
        return self._params

    @property
    def num_classes(self) -> int:
        return self._params.shape[0]

    @property
    def n_features(self) -> int:
        return self._params.shape[1]

    def forward(self, z: Tensor) -> Tensor:
        """Squared distances of ``z`` ``(N, D)`` to every centre, shape ``(N, K)``."""
        return squared_distances(z, self._params.to(z.dtype))


class RunningCenters(nn.Module):
    """Empirical class means of the embeddings seen so far, with per-class counts.

    ``update`` adds a batch to the exact cumulative mean of each class present in it
    (``mu_k <- (n_k mu_k + sum_{y_i = k} z_i) / (n_k + m_k)``), ignores OOD targets, works
    without data-dependent shapes and never stores an autograd graph. Classes not seen yet keep
    a zero centre and a zero count.
    """

    running_centers: Tensor
    counts: Tensor

    def __init__(self, n_classes: int, n_embedding: int) -> None:
        super().__init__()
        self.register_buffer("running_centers", torch.zeros(int(n_classes), int(n_embedding)))
        self.register_buffer("counts", torch.zeros(int(n_classes)))

    @property
    def centers(self) -> Tensor:
        return self.running_centers

    @property
    def num_classes(self) -> int:
        return self.running_centers.shape[0]

    def reset(self) -> None:
        """Forget every centre and count."""
        self.running_centers.zero_()
        self.counts.zero_()

    def batch_sums(self, z: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-class sums ``(K, D)`` and counts ``(K,)`` of the ID rows of ``z``; keeps the graph."""
        # a comparison, not F.one_hot: one_hot reads the targets' range on the host
        classes = torch.arange(self.num_classes, device=target.device)
        weights = (known_or_zero(target)[:, None] == classes).to(z.dtype)
        weights = weights * is_known(target).to(z.dtype)[:, None]
        return weights.T @ z, weights.sum(0)

    def batch_means(self, z: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-class means ``(K, D)`` of the batch (0 for absent classes) and counts ``(K,)``."""
        sums, counts = self.batch_sums(z, target)
        return sums / counts.clamp_min(1)[:, None], counts

    @torch.no_grad()
    def update(self, z: Tensor, target: Tensor) -> None:
        """Fold a batch of embeddings ``(N, D)`` with targets ``(N,)`` into the running means."""
        sums, counts = self.batch_sums(z.detach().to(self.running_centers.dtype), target)
        total = self.counts + counts
        merged = (self.running_centers * self.counts[:, None] + sums) / total.clamp_min(1)[:, None]
        self.running_centers.copy_(torch.where(total[:, None] > 0, merged, self.running_centers))
        self.counts.copy_(total)

    def forward(self, z: Tensor) -> Tensor:
        """Squared distances of ``z`` ``(N, D)`` to the running centres, shape ``(N, K)``."""
        return squared_distances(z, self.running_centers.to(z.dtype))
