"""The confidence scorer and the output convention of a model with a confidence branch."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed


def _checked(owner: str, logits: Tensor) -> Tensor:
    x = check_float(owner, "logits", logits, ranks=(2,), masks=True)
    if x.shape[1] < 2:
        raise fail(
            owner,
            "logits",
            "(B, C + 1): C >= 1 class logits with the confidence logit as the last column",
            x,
        )
    return x


def split_confidence(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Split a ``(B, C + 1)`` output into class logits ``(B, C)`` and confidence ``(B, 1)``.

    The last column is the confidence *logit*; the confidence is its sigmoid, in ``[0, 1]``.
    ``ConfidenceLoss()(*split_confidence(output), target)`` trains a model that emits the
    convention :class:`ConfidenceScorer` reads.
    """
    x = _checked("split_confidence", logits)
    return x[:, :-1], torch.sigmoid(x[:, -1:])


class ConfidenceScorer(Scorer):
    """Outlier score ``1 - c`` from a learned confidence ``c = sigmoid(z)`` (higher = more OOD).

    Convention: the model's ``logits`` output is ``(B, C + 1)``, the class logits followed by the
    confidence logit ``z`` of the confidence branch (``torch.cat([class_logits, z], 1)``), so the
    whole model exports as one output that this scorer reads. ``predict`` is the argmax over the
    first ``C`` columns. Computed as ``sigmoid(-z)``, which equals ``1 - c`` without cancellation.

    DeVries & Taylor, "Learning Confidence for Out-of-Distribution Detection in Neural
    Networks", arXiv:1802.04865, 2018 (the confidence estimate is the OOD score).
    """

    reads = "logits"

    def forward(self, logits: Tensor) -> Tensor:
        x = _checked(type(self).__name__, logits)
        score = torch.sigmoid(-x[:, -1].to(compute_dtype(x.dtype)))
        # fail closed where checks do not run: NaN or +inf anywhere in a row scores +inf
        # (-inf masks a class; a -inf confidence logit already scores 1)
        ok = torch.isfinite(x.amax(dim=1))
        return fail_closed(torch.where(ok, score, torch.full_like(score, float("nan"))))

    def predict(self, logits: Tensor) -> Tensor:
        """The class decision: argmax over the class logits (all but the last column)."""
        return _checked(type(self).__name__, logits)[:, :-1].argmax(dim=1)
