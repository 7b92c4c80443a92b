"""Relative Mahalanobis distance: class Gaussians minus a background Gaussian (Ren et al. 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.scoring import Scorer
from ood_core.statistics import (
    ClassStatistics,
    check_ridge,
    feature_rows,
    precision,
    refuse_model,
    squared_distances,
)
from ood_core.validation import fail_closed


class RMD(Scorer):
    """Relative Mahalanobis distance ``min_k (d_k(z) - d_0(z))`` (higher = more OOD).

    Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan, "A Simple Fix to Mahalanobis Distance for
    Improving Near-OOD Detection", arXiv:2106.09022 (2021), eq. (4) (the confidence there is the
    negated score): ``d_k`` is the squared Mahalanobis distance to class mean ``mu_k`` under the
    tied covariance ``S`` (as in Lee et al. 2018), ``d_0`` the one under a background Gaussian
    ``N(mu_0, S_0)`` fitted to all samples; covariances are the MLEs (``1/N``), fitted in float64
    over batches. Needs at least two classes (with one, ``d_1 - d_0`` is 0). Reads
    ``features (B, D)`` or ``(B, D, H, W)`` per pixel. ``eps`` (ours): ridge added to both
    covariances; ``None`` adds one only when a covariance is singular, with a warning.

    Differs from pytorch-ood 0.4.0 (``RMD(encoder)``): 0.4.0 inverts the scatter matrices
    ``N * S`` and ``N * S_0`` (plus ``1e-6 I``), so its score is ours ``/ N`` up to that ridge;
    the ranking is the same. 0.4.0 averages feature maps; we score them per pixel.
    """

    reads = "features"
    needs_fit = True
    fit_needs_labels = True
    fit_state = ("offset", "whiten", "centres", "background", "classes")
    offset: Tensor
    whiten: Tensor
    centres: Tensor
    background: Tensor
    classes: Tensor

    def __init__(
        self, encoder: Any = None, *, eps: float | None = None, head: nn.Module | None = None
    ) -> None:
        super().__init__(head=head)
        refuse_model(type(self).__name__, "encoder", encoder)
        self.eps = check_ridge(type(self).__name__, "eps", eps)
        for name, shape in (("offset", (0,)), ("whiten", (0, 0)), ("centres", (0, 0))):
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer("background", torch.zeros(0, 0))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))

    def _fit_begin(self) -> None:
        self._stats = ClassStatistics(owner=type(self).__name__)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        self._stats.update(x, y)

    def _fit_end(self) -> None:
        owner = type(self).__name__
        moments = self._stats.finalize()
        del self._stats
        present = moments.present
        if int(present.sum()) < 2:
            raise ValueError(
                f"{owner}.fit: argument 'y' must hold at least 2 classes (the relative distance "
                f"to a single class is 0), got only class {int(present.nonzero()[0, 0])}"
            )
        offset = moments.total_mean()  # the background mean mu_0
        whiten = precision(moments.shared_covariance(), owner=owner, eps=self.eps).whiten
        background = precision(
            moments.total_covariance(), owner=f"{owner} (background)", eps=self.eps
        ).whiten
        dtype = self.offset.dtype
        self.offset, self.whiten = offset.to(dtype), whiten.to(dtype)
        self.centres = ((moments.means[present] - offset) @ whiten).to(dtype)
        self.background = background.to(dtype)
        self.classes = present.nonzero()[:, 0].to(self.classes.device)

    def _relative(self, features: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """``d_k - d_0`` per row ``(N, C)`` and the leading shape of the scores."""
        self._check_fitted()
        x, lead = feature_rows(type(self).__name__, features, self.offset.shape[0])
        centred = x - self.offset.to(x.dtype)
        d = squared_distances(centred @ self.whiten.to(x.dtype), self.centres.to(x.dtype))
        d0 = (centred @ self.background.to(x.dtype)).square().sum(1, keepdim=True)
        return d - d0, lead

    def forward(self, features: Tensor) -> Tensor:
        relative, lead = self._relative(features)
        return fail_closed(relative.min(dim=1).values.reshape(lead))

    def predict(self, features: Tensor) -> Tensor:
        """The class of the smallest relative distance, int64 ``(B,)`` or ``(B, H, W)``."""
        relative, lead = self._relative(features)
        return self.classes[relative.argmin(dim=1)].reshape(lead)
