"""The weighted energy of VOS, shared by the losses (training) and the scorer (test time)."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.reduction import compute_dtype


def weighted_energy(logits: Tensor, weight: Tensor, dim: int = 1) -> Tensor:
    """Weighted energy ``E(x) = -log sum_c relu(w_c) exp(f_c(x))`` over ``dim`` (higher = more OOD).

    Du et al., "VOS: Learning What You Don't Know by Virtual Outlier Synthesis", ICLR 2022,
    Eq. (4); the weights pass through a ReLU as in the authors' code. ``weight`` holds one entry
    per class (``(C,)`` or ``Linear(C, 1).weight`` of shape ``(1, C)``). Computed as a
    max-subtracted log-sum-exp of ``f_c + log w_c`` (classes with ``w_c <= 0`` contribute
    nothing), in at least fp32, so it neither overflows for large logits nor underflows when the
    largest logit belongs to a zero-weight class. When no weight is positive the weighted sum is
    empty (``log 0``); every class then counts with weight 1, i.e. the plain free energy, so the
    value stays finite and keeps the energy's ranking.

    Differs from pytorch-ood 0.4.0: 0.4.0 returns NaN/inf when every weight is ``<= 0``, its
    test-time ``WeightedEBO`` overflows to ``-inf`` for large logits (no max subtraction), and its
    training energy subtracts the unweighted maximum. Here training and scoring call this one
    function, so they agree exactly.
    """
    x = logits.to(compute_dtype(logits.dtype))
    w = weight.to(x.dtype).reshape(-1)
    if w.shape[0] != x.shape[dim]:
        raise ValueError(
            f"weighted_energy: argument 'weight' must have one entry per class "
            f"({x.shape[dim]}), got a tensor of shape {tuple(weight.shape)}"
        )
    shape = [1] * x.dim()
    shape[dim] = -1
    w = w.reshape(shape)
    positive = w > 0
    # log w where w > 0, -inf elsewhere; the inner where keeps log's gradient finite
    log_w = torch.where(
        positive, torch.log(torch.where(positive, w, torch.ones_like(w))), float("-inf")
    )
    log_w = torch.where(positive.any(), log_w, torch.zeros_like(log_w))
    z = x + log_w
    m = z.amax(dim=dim, keepdim=True).detach()
    # an all -inf slice (only possible with -inf logits) would give nan; keep m finite
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return -(torch.log(torch.exp(z - m).sum(dim=dim)) + m.squeeze(dim))
