"""RankFeat: remove each sample's rank-1 feature component, score the energy of the head."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.shaping import ShapingScorer
from ood_core.validation import check_positive_int

#: power iterations on ``M M^T`` (each squares the ratio ``s2 / s1`` of the error)
DEFAULT_ITERATIONS = 20


def remove_rank1(x: Tensor, iterations: int) -> Tensor:
    """``M - s1 u1 v1^T = M - u u^T M`` for each sample's ``M = x.reshape(C, H W)``.

    ``u`` is the leading eigenvector of ``M M^T`` (``M^T M`` and ``M v v^T`` when ``H W < C``)
    found by ``iterations`` steps of the power method from the vector of ones. Its error
    shrinks as ``(s2 / s1) ** (2 iterations)``. For non-negative (post-ReLU) maps the leading
    eigenvector is non-negative (Perron-Frobenius), so the ones start is never orthogonal to it.
    Matrix products only: it exports (ONNX has no SVD).
    """
    m = x.flatten(2)
    c = m.shape[1]
    wide = c <= m.shape[2]
    gram = m @ m.transpose(1, 2) if wide else m.transpose(1, 2) @ m
    u = torch.ones_like(gram[:, :, :1])
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(iterations):
        u = gram @ u
        u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True).clamp_min(tiny)
    rank1 = u @ (u.transpose(1, 2) @ m) if wide else (m @ u) @ u.transpose(1, 2)
    return (m - rank1).reshape(x.shape)


class RankFeat(ShapingScorer):
    """Outlier score ``-log sum_c exp(head(pool(X - s1 u1 v1^T))_c)``; nothing to fit.

    Song, Sebe and Wang, "RankFeat: Rank-1 Feature Removal for Out-of-distribution Detection",
    NeurIPS 2022. Each sample's feature map ``X`` ``(C, H W)`` loses its rank-1 component
    (largest singular value and vectors), found by power iteration (the paper's fast variant)
    instead of an exact SVD so the scorer exports; see :func:`remove_rank1` for the error.
    Reads feature maps ``(B, C, H, W)``; ``head`` maps their global average to logits (see
    :mod:`ood_core.shaping`).
    """

    ranks = (4,)

    def __init__(
        self,
        backbone: Any = None,
        head: nn.Module | None = None,
        detector: Any = None,
        *,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        super().__init__(backbone, head, detector)
        self.iterations = check_positive_int(type(self).__name__, "iterations", iterations)

    def _shape(self, x: Tensor) -> Tensor:
        return remove_rank1(x, self.iterations)


__all__ = ["DEFAULT_ITERATIONS", "RankFeat", "remove_rank1"]
