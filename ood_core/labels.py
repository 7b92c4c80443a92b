"""Label conventions: a target ``>= 0`` is an in-distribution class, any value ``< 0`` is OOD."""

from __future__ import annotations

import torch
from torch import Tensor


def is_known(target: Tensor) -> Tensor:
    """Boolean mask of in-distribution targets (``target >= 0``)."""
    return target >= 0


def is_unknown(target: Tensor) -> Tensor:
    """Boolean mask of OOD targets (``target < 0``)."""
    return target < 0


def known_or_zero(target: Tensor) -> Tensor:
    """``target`` with OOD entries replaced by class 0, so it can index without boolean masks.

    Combine with :func:`is_known` as a weight to discard the placeholder entries.
    """
    return torch.where(target >= 0, target, torch.zeros_like(target))
