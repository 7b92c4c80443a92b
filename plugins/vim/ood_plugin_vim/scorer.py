"""ViM: virtual-logit matching, the residual of the features beyond a principal subspace."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows
from ood_core.head import FeatureScorer, linear_from_weights, linear_weights, refuse_encoder
from ood_core.reduction import compute_dtype
from ood_core.statistics import ClassStatistics
from ood_core.validation import check_embedding, check_positive_int, fail, fail_closed

#: rows kept to estimate alpha (the mean residual norm needs the subspace, known after the pass)
DEFAULT_ALPHA_SAMPLES = 50_000


class ViM(FeatureScorer):
    """Outlier score ``alpha * |(x - u) R|_2 - log sum_c exp(l_c(x))``.

    Wang, Li, Feng and Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022.
    ``l(x) = W x + b`` are the logits of the linear head, ``u = -W^+ b`` the origin where they
    vanish, and ``R`` (D, D - d) spans the complement of the ``d`` principal directions of the
    fit features' second moment ``E[(x - u)(x - u)^T]``. ``alpha = mean max_c l_c / mean |(x - u)
    R|`` over the fit data matches the virtual logit to the real ones. Reads features ``(B, D)``.

    ``head`` is the classifier head: an ``nn.Linear`` or a module exposing ``weight`` (C, D) and
    ``bias`` (C,); pytorch-ood 0.4.0's ``w``/``b`` keywords build one. ``fit`` streams float64
    statistics; the mean residual norm of alpha is taken over an evenly spread subsample of at
    most ``alpha_samples`` fit rows (all rows below it; a warning above). Rows labelled ``< 0``
    are dropped.
    """

    needs_fit = True
    fit_sums = ("_max_logit",)  # summed over torch.distributed ranks
    fit_state = ("origin", "residual", "alpha")
    origin: Tensor
    residual: Tensor
    alpha: Tensor

    def __init__(
        self,
        encoder: Any = None,
        d: int | None = None,
        w: Tensor | None = None,
        b: Tensor | None = None,
        *,
        head: nn.Module | None = None,
        alpha_samples: int = DEFAULT_ALPHA_SAMPLES,
    ) -> None:
        owner = type(self).__name__
        refuse_encoder(owner, encoder)
        if w is not None or b is not None:
            if head is not None:
                raise fail(owner, "head", "None when w and b are given (one head)", "a module")
            head = linear_from_weights(owner, w, b)
        if head is None:
            raise fail(owner, "head", "the linear classifier head (or w and b)", "None")
        super().__init__(head=head)
        linear_weights(owner, self.head)
        self.d = check_positive_int(owner, "d", d)
        self.alpha_samples = check_positive_int(owner, "alpha_samples", alpha_samples)
        self.register_buffer("origin", torch.zeros(0))
        self.register_buffer("residual", torch.zeros(0, 0))
        self.register_buffer("alpha", torch.zeros(()))

    def _weights(self) -> tuple[Tensor, Tensor]:
        return linear_weights(type(self).__name__, self.head)

    def _fit_begin(self) -> None:
        w, b = (t.double() for t in self._weights())
        # -W^+ b: the minimum-norm least-squares solution (pivoted QR, not a full SVD)
        self._u = -torch.linalg.lstsq(w, b[:, None], driver="gelsy").solution[:, 0]
        self._stats = ClassStatistics(owner=type(self).__name__)
        self._rows = BoundedRows(self.alpha_samples)
        self._max_logit = 0.0

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if y is not None:
            x = x[y >= 0]
        w, b = (t.to(x) for t in self._weights())
        if x.shape[1] != w.shape[1]:
            raise fail(f"{type(self).__name__}.fit", "x", f"features (B, {w.shape[1]})", x)
        self._stats.update(x)
        self._rows.add(x)
        self._max_logit += float((x @ w.T + b).amax(dim=1).sum())

    def _fit_end(self) -> None:
        owner = type(self).__name__
        moments = self._stats.finalize()
        width, n = moments.means.shape[1], moments.total
        if self.d >= width:
            raise fail(owner, "d", f"below the feature width {width}", repr(self.d))
        shift = moments.means[0] - self._u  # second moment about u = scatter + n shift shift^T
        second = (moments.scatter + n * torch.outer(shift, shift)) / n
        values, vectors = torch.linalg.eigh(second)  # ascending: the first D - d are the residual
        _warn_if_undetermined(owner, values, self.d)
        residual = vectors[:, : width - self.d].contiguous()
        self._rows.warn_if_reduced(owner, "alpha_samples")
        norms = torch.linalg.vector_norm((self._rows.rows() - self._u) @ residual, dim=1)
        alpha = (self._max_logit / n) / float(norms.mean())
        dtype = self.residual.dtype
        self.origin, self.residual = self._u.to(dtype), residual.to(dtype)
        self.alpha = torch.tensor(alpha, dtype=dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        x = check_embedding(type(self).__name__, "features", features, self.origin.shape[0])
        dtype = compute_dtype(x.dtype)
        z = x.to(dtype)
        w, b = (t.to(dtype) for t in self._weights())
        energy = torch.logsumexp(z @ w.T + b, dim=1)
        virtual = torch.linalg.vector_norm(
            (z - self.origin.to(dtype)) @ self.residual.to(dtype), dim=1
        )
        return fail_closed(self.alpha.to(dtype) * virtual - energy)


def _warn_if_undetermined(owner: str, values: Tensor, d: int) -> None:
    """Warn when the d-th and (d+1)-th largest eigenvalues tie (the subspace is arbitrary)."""
    top = values.flip(0)
    tol = (
        values.shape[0]
        * torch.finfo(torch.float64).eps
        * 10
        * float(top[0].abs().clamp_min(1e-300))
    )
    if float(top[d - 1] - top[d]) <= tol:
        warnings.warn(
            f"{owner}.fit: the fit features do not determine a principal subspace of dimension "
            f"d={d} (its eigenvalues tie, e.g. fewer samples than d); the residual is arbitrary "
            "within the tie. Fit on more samples or lower d",
            UserWarning,
            stacklevel=4,
        )


__all__ = ["DEFAULT_ALPHA_SAMPLES", "ViM"]
