"""The MCHAD loss (multi-class hypersphere anomaly detection)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ood_core.arguments import check_real
from ood_core.centers import ClassCenters, squared_distances
from ood_core.functional import cross_entropy
from ood_core.labels import is_known, is_unknown, known_or_zero
from ood_core.loss import Loss
from ood_core.nearest_center import check_positive_int
from ood_core.reduction import compute_dtype, masked_mean, masked_reduction
from ood_core.validation import check_batch, check_float, check_target, check_tensor, fail


class _CenterTerm(nn.Module):
    """Holds the class centres and the radius (state-dict path ``center_loss._centers``)."""

    def __init__(self, n_classes: int, n_dim: int, radius: float) -> None:
        super().__init__()
        self._centers = ClassCenters(n_classes, n_dim)
        if n_classes == n_dim:  # unit vectors, as pytorch-ood initialises square centre sets
            with torch.no_grad():
                nn.init.eye_(self._centers.params)
        self.radius = radius


class _OutlierTerm(nn.Module):
    """Holds the margin as a persistent buffer (state-dict key ``regu_loss.margin``)."""

    margin: Tensor

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.register_buffer("margin", torch.tensor([margin], dtype=torch.float32))


class MCHADLoss(Loss):
    """Multi-class hypersphere loss: pull ID embeddings into class spheres, push outliers out.

    With squared distances ``d_k(x) = |f(x) - mu_k|^2`` to ``K`` learnable centres (``distmat``,
    from :meth:`distance`), radius ``r`` and margin ``m``::

        L_Lambda(x, y) = max(0, d_y(x) - r^2)                      ID samples
        L_Delta(x, y)  = -log softmin(d(x))_y
                       = log(1 + sum_{j != y} exp(d_y(x) - d_j(x)))  ID samples
        L_Theta(x)     = sum_k max(0, (r + m)^2 - d_k(x))           OOD samples (target < 0)

        L = weight_center * mean_ID(L_Lambda) / K + weight_nll * mean_ID(L_Delta)
            + weight_oe * sum_OOD(L_Theta)

    Kirchheim, Filax, Ortmeier, "Multi-Class Hypersphere Anomaly Detection", ICPR 2022. The
    centre term is averaged over ID samples and classes and the outlier term summed over the
    OOD samples, as in pytorch-ood and the authors' code. With the default ``r = m = 0`` the
    outlier term vanishes: set ``radius``/``margin`` to use outliers. Empty parts of a batch
    contribute 0 (graph kept). Natural scorer: ``mchad`` (squared distance to the closest
    centre, :meth:`scorer`).

    Differs from pytorch-ood 0.4.0: the outlier term is the paper's
    ``max(0, (r + m)^2 - d_k)``; 0.4.0 computes ``max(0, m^2 - d_k^2)``, which squares an
    already squared distance, ignores the radius and is identically zero with the default
    margin. The centre term compares ``d_y`` with ``r^2`` as in the paper; 0.4.0 compares it
    with ``r``. :meth:`distance` uses the exact broadcast difference instead of the expanded
    ``|z|^2 - 2 z.mu + |mu|^2``, which cancels near a centre. Bad input raises ``ValueError``.
    """

    roles = {"distmat": "distances", "y": "target"}

    def __init__(
        self,
        n_classes: int,
        n_dim: int,
        radius: float = 0,
        margin: float = 0,
        weight_center: float = 1.0,
        weight_nll: float = 1.0,
        weight_oe: float = 1.0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        n_classes = check_positive_int(owner, "n_classes", n_classes)
        n_dim = check_positive_int(owner, "n_dim", n_dim)
        radius = check_real(owner, "radius", radius, minimum=0.0)
        margin = check_real(owner, "margin", margin, minimum=0.0)
        self.weight_center = check_real(owner, "weight_center", weight_center, minimum=0.0)
        self.weight_nll = check_real(owner, "weight_nll", weight_nll, minimum=0.0)
        self.weight_oe = check_real(owner, "weight_oe", weight_oe, minimum=0.0)
        # submodule names keep pytorch-ood's state-dict keys
        self.center_loss = _CenterTerm(n_classes, n_dim, radius)
        self.regu_loss = _OutlierTerm(margin)

    @property
    def centers(self) -> ClassCenters:
        """The class centres ``mu`` (a :class:`ood_core.centers.ClassCenters`, ``(K, D)``)."""
        return self.center_loss._centers

    @property
    def radius(self) -> float:
        """Radius ``r`` of the class hyperspheres."""
        return self.center_loss.radius

    @property
    def margin(self) -> Tensor:
        """Margin ``m`` beyond the spheres for outliers (buffer of shape ``(1,)``)."""
        return self.regu_loss.margin

    def distance(self, z: Tensor) -> Tensor:
        """Squared distances ``(B, K)`` of embeddings ``z`` ``(B, D)`` to the centres.

        This is the ``distmat`` that :meth:`forward` takes; gradients reach ``z`` and the centres.
        """
        owner = type(self).__name__
        z = check_float(owner, "z", z, ranks=(2,))
        if z.shape[1] != self.centers.n_features:
            raise fail(owner, "z", f"of shape (B, {self.centers.n_features})", z)
        dtype = compute_dtype(z.dtype)
        return squared_distances(z.to(dtype), self.centers.params.to(dtype))

    def _check(self, distmat: object, y: object) -> tuple[Tensor, Tensor]:
        owner = type(self).__name__
        n_classes = self.centers.num_classes
        distmat = check_float(owner, "distmat", distmat, ranks=(2,))
        if distmat.shape[1] != n_classes:
            raise fail(
                owner, "distmat", f"of shape (B, {n_classes}) (one column per centre)", distmat
            )
        y = check_tensor(owner, "y", y)
        if y.dim() != 1:
            raise fail(owner, "y", "a tensor of rank 1 (one label per sample)", y)
        check_batch(owner, distmat=distmat, y=y)
        y = check_target(owner, y, shape=(distmat.shape[0],), num_classes=n_classes, arg="y")
        return distmat, y

    def terms(self, distmat: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The three reduced terms, unweighted: ``center``, ``nll`` and ``oe`` (scalars)."""
        distmat, y = self._check(distmat, y)
        d = distmat.to(compute_dtype(distmat.dtype))
        known = is_known(y)
        r = self.radius
        d_y = d.gather(1, known_or_zero(y)[:, None]).squeeze(1)
        center = masked_mean(torch.relu(d_y - r * r), known) / d.shape[1]
        # cross-entropy over the softmin of the distances (logits = -d); ignores OOD targets
        nll = cross_entropy(-d, y, reduction="mean")
        bound = (r + self.margin.to(d.dtype)) ** 2
        outside = torch.relu(bound - d).sum(dim=1)
        oe = masked_reduction(outside, is_unknown(y), "sum")
        return {"center": center, "nll": nll, "oe": oe}

    def forward(self, distmat: Tensor, y: Tensor) -> Tensor:
        """The loss for squared distances ``distmat`` ``(B, K)`` and labels ``y`` ``(B,)``.

        ``distmat`` is ``self.distance(embedding)``; labels ``< 0`` mark outliers.
        """
        t = self.terms(distmat, y)
        return (
            self.weight_center * t["center"] + self.weight_nll * t["nll"] + self.weight_oe * t["oe"]
        )

    def scorer(self) -> nn.Module:
        """The natural scorer ``mchad``, holding a copy of the current centres."""
        from ood_plugin_mchad.scorer import MCHADScorer

        params = self.centers.params
        return MCHADScorer(params.shape[0], params.shape[1], params)
