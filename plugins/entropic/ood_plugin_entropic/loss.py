"""Entropic open-set and Objectosphere losses (Dhamija et al., NeurIPS 2018)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ood_core.labels import is_known, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import Reduction, apply_reduction, check_reduction, compute_dtype
from ood_core.validation import check_classification, check_float, fail


def entropic_terms(logits: Tensor, target: Tensor) -> Tensor:
    """Per-entry entropic open-set loss: ``-log s_y`` for ``y >= 0``, ``-mean_c log s_c`` else.

    ``logits`` ``(B, C[, H, W])`` in any float dtype (computed in at least fp32), ``target``
    ``(B[, H, W])``; returns the target's shape.
    """
    logp = torch.log_softmax(logits.to(compute_dtype(logits.dtype)), dim=1)
    nll = -logp.gather(1, known_or_zero(target).unsqueeze(1)).squeeze(1)
    uniform = -logp.mean(dim=1)
    return torch.where(is_known(target), nll, uniform)


class EntropicOpenSetLoss(Loss):
    """Entropic open-set loss: cross-entropy on known samples, maximum entropy on outliers.

    ``L(x, y) = -log s_y(x)`` if ``y >= 0`` and ``L(x, y) = -1/C sum_c log s_c(x)`` if
    ``y < 0``, where ``s = softmax(f(x))`` over ``C`` classes. The outlier term is minimal when
    the softmax is uniform. Classification ``(B, C)`` and segmentation ``(B, C, H, W)`` (the
    per-pixel form of Chan et al., ICCV 2021). ``mean`` averages over all entries, known and
    outliers alike.

    Dhamija, Günther & Boult, "Reducing Network Agnostophobia", NeurIPS 2018. Natural scorer:
    ``msp`` (the paper thresholds the maximum softmax score).

    Differs from pytorch-ood 0.4.0: any float dtype works (0.4.0 writes fp16/bf16/fp64 values
    into an fp32 buffer and crashes); an empty batch gives 0 with the graph kept (0.4.0: NaN);
    no data-dependent indexing, so it compiles with ``fullgraph=True``.
    """

    roles = {"logits": "logits", "target": "target"}

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, type(self).__name__)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        owner = type(self).__name__
        logits, target = check_classification(owner, logits, target)
        return apply_reduction(entropic_terms(logits, target), self.reduction, owner)

    def scorer(self) -> nn.Module:
        """The natural scorer, maximum softmax probability (built-in ``msp``)."""
        from ood_core.builtin.scorers import MaxSoftmax

        return MaxSoftmax()


class ObjectosphereLoss(Loss):
    """Objectosphere loss: entropic open-set loss plus a deep-feature magnitude term.

    ``L(x, y) = L_E(x, y) + alpha * max(0, xi - ||F(x)||_2)^2`` if ``y >= 0`` and
    ``L(x, y) = L_E(x, y) + alpha * ||F(x)||_2^2`` if ``y < 0``, where ``L_E`` is
    :class:`EntropicOpenSetLoss` on the logits ``f(x)`` and ``F(x)`` are the deep features of a
    layer of the model (usually the penultimate one). Known samples are pushed out of the ball of
    radius ``xi``, outliers towards the origin. ``forward(logits, features, target)``;
    classification ``(B, C)``/``(B, D)`` and per-pixel segmentation ``(B, C, H, W)``/
    ``(B, D, H, W)`` with the same spatial size.

    Dhamija, Günther & Boult, "Reducing Network Agnostophobia", NeurIPS 2018. Natural scorer:
    ``objectosphere`` (negative deep-feature magnitude, reads ``features``).

    Differs from pytorch-ood 0.4.0: any float dtype works (0.4.0 crashes on fp16/bf16/fp64); an
    empty batch gives 0 (0.4.0: NaN); the outlier score uses the magnitude of the deep features
    the loss regularises, not the norm of the logits (see :meth:`score`); mask-based, so it
    compiles with ``fullgraph=True``.
    """

    roles = {"logits": "logits", "features": "features", "target": "target"}

    def __init__(self, alpha: float = 1.0, xi: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        owner = type(self).__name__
        if not alpha >= 0:
            raise fail(owner, "alpha", ">= 0", alpha)
        if not xi >= 0:
            raise fail(owner, "xi", ">= 0", xi)
        self.alpha = float(alpha)
        self.xi = float(xi)
        self.entropic = EntropicOpenSetLoss(reduction=None)
        self.reduction = check_reduction(reduction, owner)

    def forward(self, logits: Tensor, features: Tensor, target: Tensor) -> Tensor:
        owner = type(self).__name__
        logits, target = check_classification(owner, logits, target)
        features = check_float(owner, "features", features, ranks=(logits.dim(),))
        expected = (logits.shape[0], *logits.shape[2:])
        if (features.shape[0], *features.shape[2:]) != expected:
            raise fail(
                owner,
                "features",
                f"a batch (and spatial size) matching 'logits' {tuple(logits.shape)}",
                features,
            )
        entropic = self.entropic(logits, target)
        dtype = torch.promote_types(entropic.dtype, compute_dtype(features.dtype))
        z = features.to(dtype)
        squared = z.pow(2).sum(dim=1)
        below_xi = (self.xi - torch.linalg.vector_norm(z, dim=1)).relu().pow(2)
        magnitude = torch.where(is_known(target), below_xi, squared)
        return apply_reduction(entropic.to(dtype) + self.alpha * magnitude, self.reduction, owner)

    def scorer(self) -> nn.Module:
        """The natural scorer, negative deep-feature magnitude (``objectosphere``)."""
        from ood_plugin_entropic.scorer import ObjectosphereScorer

        return ObjectosphereScorer()

    @staticmethod
    def score(logits: Tensor, features: Tensor | None = None) -> Tensor:
        """The paper's outlier score ``-max_c softmax(f(x))_c * ||F(x)||_2``.

        Pass the deep features the loss was trained on. Called with logits only (the 0.4.0
        signature) it warns and uses the logit norm as 0.4.0 does.
        """
        if features is None:
            warnings.warn(
                "ObjectosphereLoss.score(logits) uses the norm of the logits, as pytorch-ood "
                "0.4.0 did; the method regularises the deep features: call "
                "score(logits, features)",
                FutureWarning,
                stacklevel=2,
            )
            features = logits
        from ood_plugin_entropic.scorer import softmax_times_magnitude

        return softmax_times_magnitude("ObjectosphereLoss", logits, features)
