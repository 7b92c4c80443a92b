"""Maximum-likelihood Weibull fit of distance tails, in torch (float64), as libMR does it."""

from __future__ import annotations

import torch
from torch import Tensor

#: libMR translates the tail so that its smallest value sits here before fitting
TRANSLATION = 10000.0
#: bracket of the shape parameter searched by bisection (log space)
_SHAPE_RANGE = (1e-6, 1e10)


def fit_weibull(tails: Tensor, iterations: int = 64) -> tuple[Tensor, Tensor]:
    """Shape ``k`` and scale ``lam`` ``(K,)`` of two-parameter Weibulls fitted to ``tails (K, n)``.

    The maximum-likelihood shape solves ``sum_i x_i^k log x_i / sum_i x_i^k - 1/k - mean log x = 0``
    (increasing in ``k``), found by bisection on ``log k`` (64 halvings of [1e-6, 1e10]: below
    float64 resolution); then
    ``lam = (mean_i x_i^k)^(1/k)``. Values are scaled by their maximum and logs centred first,
    so large ``k`` neither overflows nor cancels digits. A tail of equal values gets the largest
    shape (a step at that value). All in float64; ``x > 0``.
    """
    x = tails.to(torch.float64)
    top = x.amax(dim=1, keepdim=True)
    log_u = (x / top).log()
    centred = log_u - log_u.mean(dim=1, keepdim=True)
    lo = torch.full((x.shape[0],), _SHAPE_RANGE[0], dtype=torch.float64).log()
    hi = torch.full_like(lo, _SHAPE_RANGE[1]).log()
    for _ in range(iterations):
        mid = (lo + hi) / 2
        k = mid.exp()[:, None]
        weights = torch.softmax(k * log_u, dim=1)  # u^k / sum u^k, without overflow
        h = (weights * centred).sum(1) - 1 / k.squeeze(1)
        lo, hi = torch.where(h < 0, mid, lo), torch.where(h < 0, hi, mid)
    k = ((lo + hi) / 2).exp()
    mean_uk = (k[:, None] * log_u).exp().mean(dim=1)
    scale = top.squeeze(1) * mean_uk.pow(1 / k)
    return k, scale


def weibull_cdf(x: Tensor, shape: Tensor, scale: Tensor) -> Tensor:
    """``1 - exp(-(x / scale)^shape)`` for ``x >= 0`` (0 below), broadcasting over classes."""
    ratio = x.clamp_min(0) / scale
    return 1 - torch.exp(-torch.exp(shape * ratio.log()))
