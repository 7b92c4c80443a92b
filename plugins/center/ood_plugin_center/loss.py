"""Center loss: pulls embeddings towards (a sphere around) their class centre."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ood_core.centers import ClassCenters
from ood_core.labels import is_known, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import compute_dtype, masked_mean
from ood_core.validation import check_classification, check_embedding, check_positive_int, fail


class CenterLoss(Loss):
    """Center loss: pulls embeddings into a sphere of radius ``r`` around their class centre.

    With the squared distances ``d_k = |f(x) - mu_k|^2`` to the class centres (:meth:`distance`,
    the input of :meth:`forward`), the loss of an ID sample of class ``y`` is::

        L(x, y) = max(0, d_y - r^2) / C

    averaged over the ID samples; samples with target ``< 0`` are ignored. The ``1 / C`` is
    pytorch-ood's convention (a mean over the batch and the ``C`` classes), kept so that
    results stay comparable. With ``r = 0`` this is Wen et al.'s center loss (up to constant
    factors). The centres are learnable unless ``fixed=True``; they start from a standard normal
    distribution, as in the authors' code, except that fixed centres with ``n_classes == n_dim``
    start as ``magnitude * I`` (class anchors). ``magnitude`` is used only then, as documented
    in pytorch-ood 0.4.0.

    Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
    ECCV 2016. Natural scorer: ``center``, ``min_k |f(x) - mu_k|^2``.

    Differs from pytorch-ood 0.4.0: ``radius`` is the radius of the sphere, so squared
    distances beyond ``r^2`` are penalised (0.4.0 subtracts ``r`` from the squared distance, a
    sphere of radius ``sqrt(r)``, against its own docstring; both agree for ``r`` in
    ``{0, 1}``); learnable centres with ``n_classes == n_dim`` start from a standard normal
    distribution, as 0.4.0's docstring says (its code starts them at the identity); no clamp
    of the distances to ``[1e-12, 1e12]`` (0.4.0's clamp adds ``1e-12`` per entry and zeroes
    the gradient of very large distances); bad input raises ``ValueError``.
    """

    roles = {"distmat": "distances", "target": "target"}

    def __init__(
        self,
        n_classes: int,
        n_dim: int,
        magnitude: float = 1.0,
        radius: float = 0.0,
        fixed: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_positive_int(owner, "n_classes", n_classes)
        self.feat_dim = check_positive_int(owner, "n_dim", n_dim)
        if not radius >= 0:
            raise fail(owner, "radius", ">= 0", repr(radius))
        self.magnitude = magnitude
        self.radius = radius
        self.fixed = fixed
        self._centers = ClassCenters(n_classes, n_dim, fixed=fixed)
        self._init_centers()

    def _init_centers(self) -> None:
        if self.fixed and self.num_classes == self.feat_dim:
            with torch.no_grad():
                self._centers._params.copy_(torch.eye(self.num_classes) * self.magnitude)
        elif self.magnitude != 1:
            warnings.warn(
                f"{type(self).__name__}: 'magnitude' applies only to fixed centres with "
                "n_classes == n_dim; the centres are drawn from a standard normal distribution",
                stacklevel=3,
            )

    @property
    def centers(self) -> ClassCenters:
        """The class centres ``mu_k`` (``centers.params``, shape ``(C, D)``)."""
        return self._centers

    def distance(self, z: Tensor) -> Tensor:
        """Squared distances ``(B, C)`` of embeddings ``z`` ``(B, D)`` to the centres."""
        z = check_embedding(type(self).__name__, "z", z, self.feat_dim)
        return self._centers(z.to(compute_dtype(z.dtype)))

    def forward(self, distmat: Tensor, target: Tensor) -> Tensor:
        """Loss of squared distances ``distmat`` ``(B, C)`` with targets ``(B,)``."""
        owner = type(self).__name__
        distmat, target = check_classification(owner, distmat, target, arg="distmat", ranks=(2,))
        if distmat.shape[1] != self.num_classes:
            raise fail(owner, "distmat", f"a tensor of shape (B, {self.num_classes})", distmat)
        d = distmat.to(compute_dtype(distmat.dtype))
        d_true = d.gather(1, known_or_zero(target)[:, None]).squeeze(1)
        values = (d_true - self.radius**2).relu()
        return masked_mean(values, is_known(target)) / self.num_classes

    def scorer(self) -> nn.Module:
        """A ``center`` scorer holding a copy of the centres."""
        from ood_plugin_center.scorer import CenterScorer

        return CenterScorer(self.num_classes, self.feat_dim, centers=self._centers.params)
