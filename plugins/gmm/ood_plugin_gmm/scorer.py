"""Negative log-likelihood under a mixture of class-conditional Gaussians."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.scoring import Scorer
from ood_core.statistics import ClassStatistics, check_ridge, feature_rows, precision, refuse_model
from ood_core.validation import fail_closed


class GMM(Scorer):
    """``-log sum_k pi_k N(z | mu_k, S_k)``: one Gaussian per class, weighted by its frequency.

    The class-conditional Gaussian model of generative classifiers (quadratic discriminant
    analysis; e.g. Lee et al., NeurIPS 2018, section 2, with per-class covariances): class means
    ``mu_k``, covariances ``S_k`` (MLE, ``1/n_k``) plus ``reg * I``, and weights
    ``pi_k = n_k / N``, fitted in closed form (no EM: the components are the classes) in float64
    over batches; scored with a log-sum-exp. Reads ``features (B, D)`` or ``(B, D, H, W)`` per
    pixel. A singular class covariance is regularised by ``reg`` with a warning (``reg=0``
    then fails). Same keywords and scores as pytorch-ood 0.4.0's ``GMM(encoder, reg)``.
    """

    reads = "features"
    needs_fit = True
    fit_needs_labels = True
    fit_state = ("offset", "whiten", "centres", "log_norm", "classes")
    offset: Tensor
    whiten: Tensor
    centres: Tensor
    log_norm: Tensor
    classes: Tensor

    def __init__(
        self, encoder: Any = None, reg: float = 1e-6, *, head: nn.Module | None = None
    ) -> None:
        super().__init__(head=head)
        owner = type(self).__name__
        refuse_model(owner, "encoder", encoder)
        self.reg = check_ridge(owner, "reg", reg, optional=False)
        for name, shape in (
            ("offset", (0,)),
            ("whiten", (0, 0, 0)),
            ("centres", (0, 0)),
            ("log_norm", (0,)),
        ):
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))

    def _fit_begin(self) -> None:
        self._stats = ClassStatistics(scatter=False, per_class=True, owner=type(self).__name__)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        self._stats.update(x, y)

    def _fit_end(self) -> None:
        moments = self._stats.finalize()
        del self._stats
        present = moments.present
        counts, means = moments.counts[present], moments.means[present]
        covs = moments.class_covariances()[present]
        inverse = precision(covs, owner=type(self).__name__, eps=self.reg)
        offset = moments.total_mean()
        d = means.shape[1]
        log_norm = (counts / counts.sum()).log() - 0.5 * (
            inverse.logdet + d * math.log(2 * math.pi)
        )
        centres = torch.einsum("cd,cde->ce", means - offset, inverse.whiten)
        dtype = self.offset.dtype
        self.offset, self.whiten = offset.to(dtype), inverse.whiten.to(dtype)
        self.centres, self.log_norm = centres.to(dtype), log_norm.to(dtype)
        self.classes = present.nonzero()[:, 0].to(self.classes.device)

    def _log_joint(self, features: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """``log pi_k + log N(z | mu_k, S_k)`` per row ``(N, C)`` and the scores' leading shape."""
        self._check_fitted()
        x, lead = feature_rows(type(self).__name__, features, self.offset.shape[0])
        centred = x - self.offset.to(x.dtype)
        z = torch.einsum("nd,cde->nce", centred, self.whiten.to(x.dtype))
        d = (z - self.centres.to(x.dtype)[None]).square().sum(-1)
        return self.log_norm.to(x.dtype) - 0.5 * d, lead

    def forward(self, features: Tensor) -> Tensor:
        joint, lead = self._log_joint(features)
        return fail_closed(-torch.logsumexp(joint, dim=1).reshape(lead))

    def predict(self, features: Tensor) -> Tensor:
        """The class of highest posterior ``pi_k N(z | mu_k, S_k)``, int64 ``(B,)``/``(B, H, W)``."""
        joint, lead = self._log_joint(features)
        return self.classes[joint.argmax(dim=1)].reshape(lead)
