"""The Objectosphere scorer: the magnitude of the deep features the loss regularises."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed


def feature_magnitude(owner: str, features: Tensor) -> Tensor:
    """``||F(x)||_2`` over dim 1 of ``(B, D)`` or ``(B, D, H, W)`` features, in at least fp32."""
    x = check_float(owner, "features", features, ranks=(2, 4))
    return torch.linalg.vector_norm(x.to(compute_dtype(x.dtype)), dim=1)


def softmax_times_magnitude(owner: str, logits: Tensor, features: Tensor) -> Tensor:
    """The paper's combined outlier score ``-max_c softmax(f(x))_c * ||F(x)||_2``."""
    x = check_float(owner, "logits", logits, ranks=(2, 4))
    magnitude = feature_magnitude(owner, features)
    if (x.shape[0], *x.shape[2:]) != tuple(magnitude.shape):
        raise fail(
            owner,
            "features",
            f"a batch (and spatial size) matching 'logits' {tuple(x.shape)}",
            features,
        )
    msp = torch.softmax(x.to(compute_dtype(x.dtype)), dim=1).amax(dim=1)
    return fail_closed(-msp.to(magnitude.dtype) * magnitude)


class ObjectosphereScorer(Scorer):
    """Negative deep-feature magnitude, ``-||F(x)||_2`` (higher = more OOD).

    The Objectosphere loss pushes the magnitude of the deep features ``F(x)`` of known samples
    above ``xi`` and that of outliers towards 0, so a small magnitude marks an unknown input.
    The scorer reads ``features`` (``(B, D)`` or ``(B, D, H, W)``, norm over dim 1), the same
    layer the loss was given. Dhamija et al. threshold the product of the softmax score and the
    magnitude; :meth:`combined` computes that ``-max_c softmax(f(x))_c * ||F(x)||_2`` from logits
    and features (a model output pair rather than one output, so it is not the exported score).

    Dhamija, Günther & Boult, "Reducing Network Agnostophobia", NeurIPS 2018.

    Deep features carry no class decision, so this scorer offers no ``predict``: take the class
    from the classifier's logits.

    Differs from pytorch-ood 0.4.0: ``ObjectosphereLoss.score`` there multiplies the softmax score
    with the norm of the *logits*, which the loss never regularises; here the magnitude is that of
    the deep features.
    """

    reads = "features"

    @property
    def predict(self):  # type: ignore[override]
        """Not available: features carry no class decision (``hasattr(scorer, 'predict')`` is False)."""
        raise AttributeError(
            "ObjectosphereScorer reads deep features and has no class decision; "
            "use the classifier's logits for predictions"
        )

    def forward(self, features: Tensor) -> Tensor:
        return fail_closed(-feature_magnitude(type(self).__name__, features))

    def combined(self, logits: Tensor, features: Tensor) -> Tensor:
        """The paper's score ``-max_c softmax(f(x))_c * ||F(x)||_2`` from logits and features."""
        return softmax_times_magnitude(type(self).__name__, logits, features)
