"""II loss: small intra-class spread, large inter-class separation of the class means."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.centers import RunningCenters, squared_distances
from ood_core.labels import is_known, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import compute_dtype, masked_mean
from ood_core.validation import check_embedding, check_positive_int, check_target
from ood_plugin_ii.scorer import IIScorer


def _from_pytorch_ood(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load hook: turn pytorch-ood 0.4.0's ``num_batches_tracked`` into per-class ``counts``.

    0.4.0 keeps one global batch counter instead of per-class counts. A loaded centre that is
    not all zero (a class 0.4.0 has seen) counts as the mean of ``num_batches_tracked``
    observations; an all-zero one as unseen.
    """
    old = prefix + "running_centers.num_batches_tracked"
    if old not in state_dict:
        return
    batches = state_dict.pop(old)
    counts = prefix + "running_centers.counts"
    centers = state_dict.get(prefix + "running_centers.running_centers")
    if counts not in state_dict and centers is not None:
        seen = (centers.detach() != 0).any(dim=1)
        state_dict[counts] = seen.to(centers.dtype) * batches.detach().reshape(()).to(centers.dtype)


class IILoss(Loss):
    """II loss: minimises the intra-class spread and maximises the inter-class separation.

    With the class means ``mu_k`` of the batch, over the ``N`` ID samples of the batch::

        intra_spread     = 1/N sum_i |z_i - mu_{y_i}|^2
        inter_separation = min_{j != k, both in the batch} |mu_j - mu_k|^2
        L = intra_spread - alpha * inter_separation

    Samples with target ``< 0`` are ignored; a batch with fewer than two classes has no
    separation term (0). In training mode the loss also folds the batch into running class
    means (exact per-class means of all embeddings seen, kept in ``running_centers``, without a
    graph); in evaluation mode it uses those running means instead of the batch means. The
    running means are stale after training (they average embeddings from every step, while the
    embedding moved); the paper computes the class means over the training data after training.
    After training, ``scorer = loss.scorer().fit(loader_of_(embedding, y))``; or
    ``loss.fit_centers(loader_of_(embedding, y))`` puts the fitted means into the loss, so that
    a checkpoint saved with it (and ``oodx export``) carries them.

    Hassen & Chan, "Learning a Neural-network-based Representation for Open Set Recognition",
    SDM 2020. Natural scorer: ``ii``, ``min_k |z - mu_k|^2`` to the running means.

    Differs from pytorch-ood 0.4.0: a batch with a single class gives the intra spread (0.4.0
    gives about ``-1e24``); the running means are exact per-class means (0.4.0 divides by a
    global batch counter, so a class first seen in the ``k``-th batch is stored as its batch
    mean divided by ``k``);
    the running means are updated without an autograd graph (0.4.0's buffer keeps a graph that
    grows every step, so ``deepcopy`` fails and a backward in evaluation mode after a training
    step raises); the state has per-class ``counts`` instead of ``num_batches_tracked`` (0.4.0
    state dicts load, see :func:`_from_pytorch_ood`).
    """

    roles = {"x": "embedding", "target": "target"}
    #: all-reduce the running-mean update across torch.distributed ranks (ood_core.distributed)
    sync_dist: bool = True

    def __init__(self, n_classes: int, n_embedding: int, alpha: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_positive_int(owner, "n_classes", n_classes)
        self.n_embedding = check_positive_int(owner, "n_embedding", n_embedding)
        self.running_centers = RunningCenters(n_classes, n_embedding)
        self.alpha = alpha
        self.register_load_state_dict_pre_hook(_from_pytorch_ood)

    @property
    def centers(self) -> RunningCenters:
        """The running class means (``centers.centers`` is the ``(C, D)`` tensor)."""
        return self.running_centers

    def _check(self, x: Tensor) -> Tensor:
        x = check_embedding(type(self).__name__, "x", x, self.n_embedding)
        return x.to(compute_dtype(x.dtype))

    def distance(self, x: Tensor) -> Tensor:
        """Squared distances ``(B, C)`` of embeddings ``x`` ``(B, D)`` to the running means."""
        z = self._check(x)
        return squared_distances(z, self.running_centers.centers.to(z.dtype))

    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)``: softmin of :meth:`distance`."""
        return torch.softmax(-self.distance(x), dim=1)

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        """Loss of embeddings ``x`` ``(B, D)`` with targets ``(B,)``; updates the running means
        in training mode."""
        z = self._check(x)
        target = check_target(
            type(self).__name__, target, shape=(x.shape[0],), num_classes=self.num_classes
        )
        if self.training:
            mu, counts = self.running_centers.batch_means(z, target)
            self._update_running_means(z, target)
        else:
            mu = self.running_centers.centers.to(z.dtype)
            counts = self.running_centers.batch_sums(z.detach(), target)[1]
        spread = ((z - mu[known_or_zero(target)]) ** 2).sum(dim=1)
        intra_spread = masked_mean(spread, is_known(target))
        present = counts > 0
        pairs = present[:, None] & present[None, :]
        pairs = pairs & ~torch.eye(self.num_classes, dtype=torch.bool, device=z.device)
        between = squared_distances(mu, mu)
        closest = torch.where(pairs, between, torch.full_like(between, float("inf"))).amin()
        inter_separation = torch.where(pairs.any(), closest, torch.zeros_like(closest))
        return intra_spread - self.alpha * inter_separation

    @torch.no_grad()
    def _update_running_means(self, z: Tensor, target: Tensor) -> None:
        """Fold the batch into the running means; under torch.distributed the per-class sums
        and counts of every rank are all-reduced first, so every rank holds the same means."""
        from ood_core.distributed import all_reduce_sum, should_sync

        centres = self.running_centers
        sums, counts = centres.batch_sums(z.detach().to(centres.running_centers.dtype), target)
        if should_sync(self):
            sums, counts = all_reduce_sum(sums, counts)
        total = centres.counts + counts
        old = centres.running_centers
        merged = (old * centres.counts[:, None] + sums) / total.clamp_min(1)[:, None]
        old.copy_(torch.where(total[:, None] > 0, merged, old))
        centres.counts.copy_(total)

    def scorer(self) -> IIScorer:
        """An ``ii`` scorer holding a copy of the running class means."""
        return IIScorer(self.num_classes, self.n_embedding, centers=self.running_centers.centers)

    @torch.no_grad()
    def fit_centers(self, x: Any, y: Tensor | None = None) -> IILoss:
        """Replace the running means and counts by the class means of ``x`` (see
        :meth:`IIScorer.fit <ood_plugin_ii.IIScorer.fit>`: embeddings and labels, or batches of
        ``(embedding, y)``); returns the loss."""
        fitted = self.scorer().fit(x, y)
        self.running_centers.running_centers.copy_(fitted.centers)
        self.running_centers.counts.copy_(fitted.fit_counts)
        return self
