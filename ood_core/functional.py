"""Functional building blocks shared by losses and scorers (mask-based, any float dtype)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ood_core.labels import is_known, known_or_zero
from ood_core.reduction import Reduction, check_reduction, in_compute_dtype


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    reduction: Reduction = "mean",
    *,
    bounds: tuple[int, int] | None = None,
) -> Tensor:
    """Cross-entropy over the ID entries only: ``-log softmax(x)_y`` where ``y >= 0``.

    ``logits`` ``(B, C)`` or ``(B, C, H, W)``, ``target`` ``(B,)`` or ``(B, H, W)``. ``mean``
    averages over the ID entries (0 when there are none, graph kept); ``none`` keeps the target's
    shape with OOD entries 0. Computed in at least fp32. ``bounds``, the target's ``(min, max)``
    where the caller read them on the host (:func:`~ood_core.validation.check_target_bounds`),
    lets the mean be torch's own (fused) one when an ID entry exists, and skips the relabelling
    when every OOD entry is already ``-1``.
    """
    check_reduction(reduction, "cross_entropy")
    x = in_compute_dtype(logits)
    # the fused kernel; OOD entries, all relabelled -1, are ignored (their loss and gradient are 0)
    t = target if bounds is not None and bounds[0] >= -1 else target.clamp_min(-1)
    if reduction != "mean":
        return F.cross_entropy(x, t, ignore_index=-1, reduction=reduction or "none")
    if bounds is not None and bounds[1] >= 0:
        return F.cross_entropy(x, t, ignore_index=-1)
    # sum / count: unlike torch's mean, 0 (not NaN) when all are OOD, with no host read
    total = F.cross_entropy(x, t, ignore_index=-1, reduction="sum")
    return total / is_known(target).sum().clamp_min(1).to(total.dtype)


def nll_and_logsumexp(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-entry cross-entropy and ``logsumexp`` over dim 1, from one pass over the logits.

    With ``m = max_c x_c`` (no gradient) and ``z = x - m``::

        lse = m + log sum_c exp(z_c)        nll = log sum_c exp(z_c) - z_y   (0 where y < 0)

    For losses that need both (the energy regulariser, SCONE): one ``logsumexp`` pass instead
    of a log-softmax plus a ``logsumexp``, with ``nll`` as precise near 0 as a log-softmax (the
    shift makes ``z_y = 0`` for the top class). ``(B, C[, H, W])`` and ``(B[, H, W])`` give two ``(B[, H, W])`` tensors, computed in
    at least fp32.
    """
    x = in_compute_dtype(logits)
    m = x.detach().amax(dim=1, keepdim=True)
    m = m.nan_to_num(0.0, 0.0, 0.0)  # an all -inf row or a +inf logit: no shift
    z = x - m
    lse_z = torch.logsumexp(z, dim=1)
    z_y = z.gather(1, known_or_zero(target).unsqueeze(1)).squeeze(1)
    nll = torch.where(is_known(target), lse_z - z_y, torch.zeros_like(lse_z))
    return nll, lse_z + m.squeeze(1)


def energy(logits: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Free energy ``E(x) = -T log sum_c exp(f_c(x) / T)`` over dim 1 (higher = more OOD).

    Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020.
    """
    x = in_compute_dtype(logits)
    return -temperature * torch.logsumexp(x / temperature, dim=1)
