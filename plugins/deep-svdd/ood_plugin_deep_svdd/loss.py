"""Deep SVDD and Deep SAD: one centre in the embedding space, squared distances to it."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ood_core.centers import ClassCenters
from ood_core.labels import is_known
from ood_core.loss import Loss
from ood_core.nearest_center import check_embedding, check_positive_int
from ood_core.reduction import (
    Reduction,
    apply_reduction,
    check_reduction,
    compute_dtype,
    masked_reduction,
)
from ood_core.validation import check_float, check_target, fail


class _OneCenterLoss(Loss):
    """Common part of Deep SVDD and Deep SAD: the fixed centre ``mu`` and input checks."""

    def __init__(self, n_dim: int, center: Tensor | None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.n_dim = check_positive_int(owner, "n_dim", n_dim)
        self._center = ClassCenters(1, n_dim, fixed=True)
        if center is not None:
            center = check_float(owner, "center", center)
            if tuple(center.shape) != (n_dim,):
                raise fail(owner, "center", f"a tensor of shape ({n_dim},)", center)
            with torch.no_grad():
                self._center._params.copy_(center.detach().reshape(1, n_dim))

    @property
    def center(self) -> ClassCenters:
        """The centre ``mu`` as a :class:`~ood_core.centers.ClassCenters` with one centre;
        calling it gives the squared distances ``(B, 1)``."""
        return self._center

    def _check(self, x: Tensor, y: Tensor | None) -> Tensor:
        owner = type(self).__name__
        x = check_embedding(owner, "x", x, self.n_dim)
        if y is not None:
            check_target(owner, y, shape=(x.shape[0],), arg="y")
        return x.to(compute_dtype(x.dtype))

    def _squared_distance(self, z: Tensor) -> Tensor:
        return self._center(z).squeeze(1)

    #: all-reduce the data of :meth:`init_center` across torch.distributed ranks
    sync_dist: bool = True

    @torch.no_grad()
    def init_center(self, x: Tensor | Iterable[Tensor], eps: float = 0.1) -> _OneCenterLoss:
        """Set the centre to the mean embedding of ``x`` (a tensor ``(N, D)`` or batches of it).

        Ruff et al., "Deep One-Class Classification", ICML 2018, Sec. 3.3: ``mu`` is the mean
        of the initial network's outputs on the training data; as in the authors' code,
        coordinates with ``|mu_i| < eps`` are set to ``+-eps`` (a centre at 0 is trivially
        reached by a network with zero weights). Sums in float64; under torch.distributed the
        sums and counts are all-reduced, so every rank gets the centre of all ranks' data.
        Returns the loss.
        """
        from ood_core.distributed import all_reduce_sum, should_sync

        owner = f"{type(self).__name__}.init_center"
        device = self._center.params.device
        total = torch.zeros(self.n_dim, dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        for batch in [x] if isinstance(x, Tensor) else x:
            z = check_embedding(owner, "x", batch, self.n_dim).detach().to(device, torch.float64)
            total += z.sum(0)
            count += z.shape[0]
        if should_sync(self):
            total, count = all_reduce_sum(total, count)
        if not bool(count > 0):
            raise ValueError(f"{owner}: argument 'x' holds no samples")
        mu = total / count
        mu = torch.where(mu.abs() < eps, torch.where(mu < 0, -eps, eps), mu)
        self._center._params.copy_(mu.to(self._center._params.dtype).reshape(1, self.n_dim))
        return self


class DeepSVDDLoss(_OneCenterLoss):
    """Deep SVDD: pulls ID embeddings into a hypersphere of radius ``r`` around one centre.

    Per ID sample ``L(x) = max(0, |f(x) - mu|^2 - r^2)``; samples with target ``< 0`` are
    ignored and ``y=None`` treats every sample as ID. With ``r = 0`` this is the One-Class Deep
    SVDD objective, with ``r > 0`` the soft-boundary objective for a fixed radius (the paper sets
    ``r`` to the ``(1 - nu)``-quantile of the training distances every few epochs: write it into
    the ``radius`` buffer). Initialise the fixed centre ``mu`` with the mean of the initial
    embeddings (``center=``) and use a network without bias terms, as the paper does, so that
    the hypersphere cannot collapse.

    Ruff et al., "Deep One-Class Classification", ICML 2018.
    Natural scorer: ``deep-svdd``, ``|f(x) - mu|^2 - r^2``.

    Differs from pytorch-ood 0.4.0: with ``reduction="none"`` the result has one entry per
    sample, 0 for OOD samples (0.4.0 drops them, a data-dependent shape); an empty or all-OOD
    batch gives 0 connected to the graph for every reduction; fp16/bf16 inputs are computed in
    fp32.
    """

    radius: Tensor

    roles = {"x": "embedding", "y": "target"}

    def __init__(
        self,
        n_dim: int,
        reduction: Reduction = "mean",
        radius: float = 0.0,
        center: Tensor | None = None,
    ) -> None:
        super().__init__(n_dim, center)
        self.reduction = check_reduction(reduction, type(self).__name__)
        self.register_buffer("radius", torch.tensor(float(radius)))

    def distance(self, x: Tensor) -> Tensor:
        """``|x - mu|^2 - r^2`` for embeddings ``x`` ``(B, D)``, shape ``(B,)``."""
        z = self._check(x, None)
        return self._squared_distance(z) - self.radius.to(z.dtype) ** 2

    @staticmethod
    def svdd_loss(
        x: Tensor,
        center: ClassCenters,
        radius: float | Tensor = 0.0,
        y: Tensor | None = None,
    ) -> Tensor:
        """Per-sample loss ``max(0, |x - mu|^2 - r^2)``, shape ``(B,)``; 0 where ``y < 0``."""
        z = x.to(compute_dtype(x.dtype))
        r = torch.as_tensor(radius, dtype=z.dtype, device=z.device)
        values = (center(z).squeeze(1) - r**2).relu()
        if y is None:
            return values
        return torch.where(is_known(y), values, torch.zeros_like(values))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Loss of embeddings ``x`` ``(B, D)`` with optional targets ``y`` ``(B,)``."""
        z = self._check(x, y)
        values = self.svdd_loss(z, self._center, self.radius, y)
        if y is None:
            return apply_reduction(values, self.reduction, type(self).__name__)
        return masked_reduction(values, is_known(y), self.reduction, type(self).__name__)

    def scorer(self) -> nn.Module:
        """A ``deep-svdd`` scorer holding a copy of the centre and the radius."""
        from ood_plugin_deep_svdd.scorer import DeepSVDDScorer

        return DeepSVDDScorer(self.n_dim, center=self._center.params[0], radius=self.radius)


class DeepSADLoss(_OneCenterLoss):
    """Deep SAD: pulls ID embeddings towards one centre and pushes labelled outliers away.

    Per sample, with ``d(x) = |f(x) - mu|^2``::

        L(x, y) = d(x)                      if y >= 0 (normal)
        L(x, y) = eta / (d(x) + eps)        if y < 0  (labelled outlier)

    and ``mean`` averages over all samples (normal and outlier), as the paper's
    ``1 / (n + m)``. All samples with ``y >= 0`` are treated as unlabelled normal data, so
    ``eta`` weights only the labelled outliers. ``eps`` keeps the outlier term finite at the
    centre (as in the authors' code).

    Ruff et al., "Deep Semi-Supervised Anomaly Detection", ICLR 2020.
    Natural scorer: ``deep-svdd``, ``|f(x) - mu|^2``.

    Differs from pytorch-ood 0.4.0: an empty batch gives 0 connected to the graph (0.4.0 gives
    NaN, the mean of nothing); fp16/bf16 inputs are computed in fp32.
    """

    roles = {"x": "embedding", "y": "target"}

    def __init__(
        self,
        n_dim: int,
        eta: float = 1.0,
        eps: float = 1e-6,
        reduction: Reduction = "mean",
        center: Tensor | None = None,
    ) -> None:
        super().__init__(n_dim, center)
        owner = type(self).__name__
        if not eps > 0:
            raise fail(owner, "eps", "> 0", repr(eps))
        self.eta = eta
        self.eps = eps
        self.reduction = check_reduction(reduction, owner)

    def distance(self, x: Tensor) -> Tensor:
        """``|x - mu|^2`` for embeddings ``x`` ``(B, D)``, shape ``(B,)``."""
        return self._squared_distance(self._check(x, None))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Loss of embeddings ``x`` ``(B, D)`` with targets ``y`` ``(B,)`` (``< 0``: outlier)."""
        d = self._squared_distance(self._check(x, y))
        values = torch.where(is_known(y), d, self.eta / (d + self.eps))
        return apply_reduction(values, self.reduction, type(self).__name__)

    def scorer(self) -> nn.Module:
        """A ``deep-svdd`` scorer holding a copy of the centre (radius 0)."""
        from ood_plugin_deep_svdd.scorer import DeepSVDDScorer

        return DeepSVDDScorer(self.n_dim, center=self._center.params[0])
