"""Reductions of per-sample loss terms, with masks instead of data-dependent indexing."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"] | None
REDUCTIONS = ("mean", "sum", "none", None)


def check_reduction(reduction: object, owner: str) -> str | None:
    """Validate a ``reduction`` argument; raises ``ValueError`` naming ``owner``."""
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{owner}: argument 'reduction' must be one of 'mean', 'sum', 'none' or None, "
            f"got {reduction!r}"
        )
    return reduction  # type: ignore[return-value]


def apply_reduction(values: Tensor, reduction: Reduction, owner: str = "loss") -> Tensor:
    """Reduce per-element ``values`` by ``mean``, ``sum`` or not at all (``none``/``None``).

    The mean of an empty tensor is 0 (not NaN) and stays connected to the graph.
    """
    reduction = check_reduction(reduction, owner)
    if reduction == "mean":
        return values.sum() / max(values.numel(), 1)
    if reduction == "sum":
        return values.sum()
    return values


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is true: ``sum(v * m) / max(sum(m), 1)``.

    ``values`` and ``mask`` broadcast to each other. Empty selections give 0 with the graph
    kept; masked-out entries never contribute, even if they are inf or NaN.
    """
    mask = mask.to(values.dtype)
    selected = torch.where(mask > 0, values, torch.zeros_like(values))
    return (selected * mask).sum() / mask.sum().clamp_min(1)


def masked_reduction(
    values: Tensor, mask: Tensor, reduction: Reduction, owner: str = "loss"
) -> Tensor:
    """Reduce ``values`` over the entries where ``mask`` holds.

    ``mean`` divides by the number of selected entries (0 when none are), ``sum`` sums them, and
    ``none`` returns ``values`` with unselected entries set to 0 (shape unchanged).
    """
    reduction = check_reduction(reduction, owner)
    if reduction == "mean":
        return masked_mean(values, mask)
    selected = torch.where(mask.to(torch.bool), values, torch.zeros_like(values))
    if reduction == "sum":
        return selected.sum()
    return selected


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to compute a loss in: fp16/bf16 are promoted to fp32, fp32/fp64 are kept."""
    return torch.promote_types(dtype, torch.float32)


def in_compute_dtype(x: Tensor) -> Tensor:
    """``x`` in :func:`compute_dtype`: itself when fp32/fp64 (a no-op ``.to`` costs ~1 us)."""
    if x.dtype is torch.float32 or x.dtype is torch.float64:
        return x
    return x.to(compute_dtype(x.dtype))
