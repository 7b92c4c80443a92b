"""Streaming float64 statistics for fitted scorers: per-class counts, means and covariances.

:class:`ClassStatistics` accumulates batch by batch in bounded memory (``O(C * D)`` for means,
``O(D^2)`` for the shared covariance, ``O(C * D^2)`` only when per-class covariances are asked
for) and merges centred scatter matrices with the pairwise update of Chan, Golub and LeVeque
(1979), so a large common offset in the features does not cancel digits the way
``sum(x x^T) - n mu mu^T`` does::

    stats = ClassStatistics(owner="Mahalanobis")
    for x, y in batches:                 # x (B, D) float, y (B,) int labels (or None)
        stats.update(x, y)
    moments = stats.finalize()           # counts, means, shared_covariance(), total_covariance()
    inv = precision(moments.shared_covariance(), owner="Mahalanobis")

Without labels every sample is class 0. :func:`precision` inverts a covariance in float64 and,
when it is singular, adds ``eps * I`` and warns (:class:`SingularCovarianceWarning`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ood_core.validation import fail


class SingularCovarianceWarning(UserWarning):
    """A covariance was singular (or nearly) and was regularised before inversion."""


@dataclass(frozen=True)
class ClassMoments:
    """Finalised float64 statistics: ``counts (C,)``, ``means (C, D)``, within-class scatter.

    ``scatter (D, D)`` is the within-class scatter ``sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T``;
    ``class_scatter (C, D, D)`` the per-class terms (``None`` unless asked for). Classes with no
    samples have count 0 and mean 0.
    """

    counts: Tensor
    means: Tensor
    scatter: Tensor | None
    class_scatter: Tensor | None

    @property
    def total(self) -> int:
        """Number of samples."""
        return int(self.counts.sum().item())

    @property
    def present(self) -> Tensor:
        """Boolean mask ``(C,)`` of classes with at least one sample."""
        return self.counts > 0

    def shared_covariance(self, ddof: int = 0) -> Tensor:
        """Tied covariance ``scatter / (N - ddof)`` (``ddof=0``: Lee et al. 2018, the MLE)."""
        if self.scatter is None:
            raise RuntimeError("ClassStatistics was built with scatter=False")
        return self.scatter / max(self.total - ddof, 1)

    def class_covariances(self, ddof: int = 0) -> Tensor:
        """Per-class covariances ``(C, D, D)``: ``class_scatter[c] / (n_c - ddof)``."""
        if self.class_scatter is None:
            raise RuntimeError("ClassStatistics was built without per_class=True")
        denom = (self.counts - ddof).clamp_min(1)
        return self.class_scatter / denom[:, None, None]

    def total_mean(self) -> Tensor:
        """Mean of all samples ``(D,)``, ignoring labels."""
        return (self.counts[:, None] * self.means).sum(0) / max(self.total, 1)

    def total_covariance(self, ddof: int = 0) -> Tensor:
        """Covariance of all samples ignoring labels: within-class plus between-class scatter."""
        if self.scatter is None:
            raise RuntimeError("ClassStatistics was built with scatter=False")
        centred = self.means - self.total_mean()
        between = (centred * self.counts[:, None]).T @ centred
        return (self.scatter + between) / max(self.total - ddof, 1)


class ClassStatistics:
    """Streaming per-class float64 counts, sums and centred scatter (see the module docstring).

    ``num_classes`` fixes the number of classes (labels must be below it); ``None`` grows with
    the largest label seen. ``scatter`` keeps the shared within-class scatter ``(D, D)``;
    ``per_class`` keeps one scatter per class ``(C, D, D)`` as well.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        scatter: bool = True,
        per_class: bool = False,
        owner: str = "ClassStatistics",
    ) -> None:
        if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
            raise fail(owner, "num_classes", "a positive int or None", num_classes)
        self.owner, self.num_classes = owner, num_classes
        self.keep_scatter, self.per_class = scatter, per_class
        self.counts: Tensor | None = None
        self.means: Tensor | None = None
        self.scatter: Tensor | None = None
        self.class_scatter: Tensor | None = None

    def update(self, x: Tensor, y: Tensor | None = None) -> ClassStatistics:
        """Add a batch ``x (B, D)`` with labels ``y (B,)`` (``None``: all class 0)."""
        x = self._check(x, y)
        if y is None:
            y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        y = y.to(device=x.device, dtype=torch.long)
        self._grow(max(int(y.max().item()) + 1 if y.numel() else 1, self.num_classes or 0), x)
        if not x.shape[0]:
            return self
        size, single = self.counts.shape[0], bool((y == y[0]).all())
        if single:  # one class in the batch (no labels, or sorted data): no scatter by label
            n_b = x.new_zeros(size).index_fill_(0, y[:1], float(x.shape[0]))
            mean_b = x.new_zeros(size, x.shape[1])
            mean_b[y[0]] = x.mean(0)
        else:  # per-class sums by index_add: O(B D), not a dense one_hot(B, C) @ x
            n_b = torch.bincount(y, minlength=size).to(torch.float64)
            mean_b = x.new_zeros(size, x.shape[1]).index_add_(0, y, x) / n_b.clamp_min(1)[:, None]
        n_a, n = self.counts, self.counts + n_b
        delta = mean_b - self.means
        weight = torch.where(n > 0, n_a * n_b / n.clamp_min(1), torch.zeros_like(n))
        if self.keep_scatter or self.per_class:
            centred = x - (mean_b[y[0]] if single else mean_b[y])
            shift = weight[:, None] * delta
        if self.keep_scatter:
            self.scatter = self.scatter + centred.T @ centred + shift.T @ delta
        if self.per_class:
            self.class_scatter = self.class_scatter + _class_scatter(centred, y, size)
            self.class_scatter += shift[:, :, None] * delta[:, None, :]
        self.means = self.means + delta * (n_b / n.clamp_min(1))[:, None]
        self.counts = n
        return self

    def finalize(self) -> ClassMoments:
        """The accumulated statistics; raises ``ValueError`` if no sample was added."""
        if self.counts is None or self.counts.sum() == 0:
            raise ValueError(f"{self.owner}.fit: argument 'x' holds no samples")
        return ClassMoments(self.counts, self.means, self.scatter, self.class_scatter)

    def all_reduce(self) -> ClassStatistics:
        """Merge the statistics of every rank of a torch.distributed process group (in place).

        Called by ``Scorer.fit`` before ``_fit_end``; call it once, after the last
        :meth:`update`. Exact and stable: the global class means come from all-reduced sums, and
        each rank shifts its scatter to them (``S + n (mu_r - mu)(mu_r - mu)^T``) before the
        scatters are summed. Ranks may hold different classes, or none. Every rank ends with
        the statistics of one accumulator fed all ranks' data. A no-op when not distributed.
        """
        from ood_core.distributed import all_reduce_max, all_reduce_sum, is_distributed

        if not is_distributed():
            return self
        width = all_reduce_max(0 if self.means is None else self.means.shape[1])
        rows = all_reduce_max(0 if self.counts is None else self.counts.shape[0])
        if width == 0:
            return self
        if self.counts is None:
            from ood_core.distributed import _device

            self._grow(
                max(rows, self.num_classes or 0),
                torch.zeros(0, width, dtype=torch.float64, device=_device()),
            )
        self._grow(rows, self.means)
        local_n, local_mu = self.counts, self.means
        counts, sums = all_reduce_sum(local_n, local_n[:, None] * local_mu)
        means = sums / counts.clamp_min(1)[:, None]
        delta = (local_mu - means) * (local_n > 0)[:, None]
        parts = []
        if self.keep_scatter:
            parts.append(self.scatter + (delta * local_n[:, None]).T @ delta)
        if self.per_class:
            outer = delta[:, :, None] * delta[:, None, :]
            parts.append(self.class_scatter + local_n[:, None, None] * outer)
        reduced = list(all_reduce_sum(*parts))
        if self.keep_scatter:
            self.scatter = reduced.pop(0)
        if self.per_class:
            self.class_scatter = reduced.pop(0)
        self.counts, self.means = counts, means
        return self

    def _check(self, x: Tensor, y: Tensor | None) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2:
            raise fail(self.owner, "x", "a float tensor (B, D)", x)
        if self.means is not None and x.shape[1] != self.means.shape[1]:
            raise fail(self.owner, "x", f"width {self.means.shape[1]} as earlier batches", x)
        if y is not None:
            if not isinstance(y, Tensor) or y.is_floating_point() or y.dtype == torch.bool:
                raise fail(self.owner, "y", "an integer tensor of class labels", y)
            if tuple(y.shape) != (x.shape[0],):
                raise fail(self.owner, "y", f"shape ({x.shape[0]},) to match 'x'", y)
            if y.numel() and int(y.min().item()) < 0:
                raise fail(self.owner, "y", "labels >= 0", f"label {int(y.min().item())}")
            top = int(y.max().item()) if y.numel() else -1
            if self.num_classes is not None and top >= self.num_classes:
                raise fail(self.owner, "y", f"labels below num_classes={self.num_classes}", top)
        return x.detach().to(torch.float64)

    def _grow(self, classes: int, x: Tensor) -> None:
        """Allocate (first batch) or extend the per-class accumulators to ``classes`` rows."""
        d, old = x.shape[1], 0 if self.counts is None else self.counts.shape[0]
        if self.scatter is None and self.keep_scatter:
            self.scatter = x.new_zeros(d, d)
        if classes <= old:
            return
        extra = classes - old
        self.counts = _cat(self.counts, x.new_zeros(extra))
        self.means = _cat(self.means, x.new_zeros(extra, d))
        if self.per_class:
            self.class_scatter = _cat(self.class_scatter, x.new_zeros(extra, d, d))


def _class_scatter(centred: Tensor, y: Tensor, classes: int) -> Tensor:
    """Per-class scatter ``(C, D, D)`` of rows already centred on their class mean: one
    ``X_c^T X_c`` per class present (rows grouped by a stable sort), ``O(B D^2)`` in all."""
    out = centred.new_zeros(classes, centred.shape[1], centred.shape[1])
    order = torch.argsort(y, stable=True)
    rows, sizes = centred[order], torch.bincount(y, minlength=classes).tolist()
    for c, part in enumerate(torch.split(rows, sizes)):
        if part.shape[0]:
            out[c] = part.T @ part
    return out


def _cat(old: Tensor | None, new: Tensor) -> Tensor:
    return new if old is None else torch.cat([old, new])


@dataclass(frozen=True)
class Precision:
    """An inverted covariance ``S``: ``matrix = S^-1`` (float64), ``whiten`` with
    ``whiten @ whiten^T = S^-1`` (so ``|(x - mu) @ whiten|^2`` is the squared Mahalanobis
    distance), ``logdet = log det S`` and ``eps``, the ridge added to the diagonal of ``S``."""

    matrix: Tensor
    whiten: Tensor
    logdet: Tensor
    eps: float


def precision(
    covariance: Tensor, *, owner: str, eps: float | None = None, rtol: float | None = None
) -> Precision:
    """Inverse of a symmetric covariance ``(..., D, D)`` by Cholesky in float64.

    ``eps * I`` is added when given. A covariance whose smallest eigenvalue is at most
    ``rtol * largest`` (default ``D * float64 eps * 10``, numpy's rank tolerance with margin) is
    singular: a :class:`SingularCovarianceWarning` names the owner, the rank and the ridge, and
    when ``eps`` is ``None`` the ridge is ``1e-6 * mean variance`` (at least ``1e-12``).
    """
    cov = covariance.to(torch.float64)
    cov = (cov + cov.transpose(-1, -2)) / 2
    d = cov.shape[-1]
    eye = torch.eye(d, dtype=torch.float64, device=cov.device)
    ridge = 0.0 if eps is None else float(eps)
    factor, inverse_factor = _cholesky_inverse(cov, ridge, eye)
    if factor is None or not _surely_full_rank(
        cov, ridge, inverse_factor, rtol
    ):  # decide by the eigenvalues
        rank = _rank(cov, rtol)
        if rank < d:
            if eps is None:
                scale = float(cov.diagonal(dim1=-2, dim2=-1).mean().clamp_min(0).item())
                ridge = max(1e-6 * scale, 1e-12)
                factor, inverse_factor = _cholesky_inverse(cov, ridge, eye)
            warnings.warn(
                f"{owner}: the covariance of the fit data is singular (rank {rank} of {d}; fewer "
                f"independent samples than feature dimensions, or constant features); "
                f"regularised by adding eps*I with eps={ridge:.3g}",
                SingularCovarianceWarning,
                stacklevel=2,
            )
    if factor is None:
        raise ValueError(
            f"{owner}: the covariance is not positive definite even after adding eps*I with "
            f"eps={ridge:.3g}; pass a larger eps"
        )
    logdet = 2 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    whiten = inverse_factor.transpose(-1, -2)
    return Precision(whiten @ inverse_factor, whiten, logdet, ridge)


def _cholesky_inverse(cov: Tensor, ridge: float, eye: Tensor) -> tuple[Tensor | None, Tensor]:
    """Cholesky factor ``L`` of ``cov + ridge I`` and ``L^-1``; ``L`` is ``None`` (and the
    second item meaningless) when the matrix is not positive definite."""
    factor, info = torch.linalg.cholesky_ex(cov + ridge * eye)
    if bool((info != 0).any()):
        return None, factor
    return factor, torch.linalg.solve_triangular(factor, eye.expand_as(cov), upper=False)


def _surely_full_rank(
    cov: Tensor, ridge: float, inverse_factor: Tensor, rtol: float | None
) -> bool:
    """A cheap certificate that every eigenvalue of ``cov`` exceeds ``rtol * largest``:
    ``lambda_min >= 1 / trace((cov + ridge I)^-1) - ridge`` and ``lambda_max <= trace(cov)``.
    ``False`` means "not proven" (the caller then computes the eigenvalues), never "singular"."""
    if not bool(torch.isfinite(inverse_factor).all()):
        return False
    d = cov.shape[-1]
    tol = rtol if rtol is not None else d * torch.finfo(torch.float64).eps * 10
    low = 1 / inverse_factor.square().sum((-2, -1)) - ridge
    top = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    return bool((low > tol * top).all())


def _rank(cov: Tensor, rtol: float | None) -> int:
    """Smallest numerical rank over a batch of symmetric matrices."""
    values = torch.linalg.eigvalsh(cov)
    top = values[..., -1:].abs().clamp_min(torch.finfo(torch.float64).tiny)
    tol = (rtol if rtol is not None else cov.shape[-1] * torch.finfo(torch.float64).eps * 10) * top
    return int((values > tol).sum(-1).min().item())


def squared_distances(z: Tensor, centres: Tensor) -> Tensor:
    """``|z_i - c_k|^2`` for ``z (N, D)`` and ``centres (C, D)``: ``(N, C)``, by one matmul.

    Expanded as ``|z|^2 - 2 z c^T + |c|^2`` and clamped at 0; callers centre ``z`` and ``c``
    near the data mean first so the expansion does not cancel digits.
    """
    cross = z @ centres.T
    return ((z * z).sum(1, keepdim=True) - 2 * cross + (centres * centres).sum(1)).clamp_min(0)


# -- helpers shared by the fitted Gaussian scorers -----------------------------------------------


def refuse_model(owner: str, arg: str, value: object) -> None:
    """A pytorch-ood 0.4.0 ``encoder``/``model`` argument must be ``None``: oodx scorers read
    the model's outputs, they do not run the model."""
    if value is not None:
        raise fail(
            owner,
            arg,
            "None: oodx scorers take the model's outputs, not the model (fit and score on "
            "features; ood_core.tap names a classifier's outputs)",
            type(value).__name__,
        )


def check_ridge(owner: str, arg: str, eps: float | None, *, optional: bool = True) -> float | None:
    """A covariance ridge: a finite number >= 0 (or ``None`` where ``optional``)."""
    if eps is None and optional:
        return None
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < float("inf"):
        what = "None or a finite number >= 0" if optional else "a finite number >= 0"
        raise fail(owner, arg, f"{what} (ridge added to the covariance)", repr(eps))
    return float(eps)


def feature_rows(owner: str, x: object, width: int) -> tuple[Tensor, tuple[int, ...]]:
    """Features ``(B, D)`` or per-pixel ``(B, D, H, W)`` as rows ``(N, D)`` in at least fp32,
    and the leading shape of the scores (``(B,)`` or ``(B, H, W)``)."""
    from ood_core.reduction import compute_dtype
    from ood_core.validation import check_float

    x = check_float(owner, "features", x, ranks=(2, 4))
    if x.shape[1] != width:
        raise fail(owner, "features", f"width {width} (dim 1, as fitted)", x)
    if x.dim() == 4:
        lead = (x.shape[0], x.shape[2], x.shape[3])
        x = x.permute(0, 2, 3, 1).reshape(-1, width)
    else:
        lead = (x.shape[0],)
    return x.to(compute_dtype(x.dtype)), lead


__all__ = [
    "ClassMoments",
    "ClassStatistics",
    "Precision",
    "check_ridge",
    "feature_rows",
    "refuse_model",
    "SingularCovarianceWarning",
    "precision",
    "squared_distances",
]
