"""Gradient uncertainty: gradients of a confounding all-ones label (Lee and AlRegib, ICIP 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ood_core.model_scoring import ModelScorer, check_filter, grad_norms


class GradUncertainty(ModelScorer):
    """``-sum_w || d/dw BCE(softmax(f(x)), 1) ||_2^2``, per sample.

    Lee, AlRegib, "Gradients as a Measure of Uncertainty in Neural Networks", ICIP 2020: the
    loss against the confounding label "every class" is the binary cross-entropy of the softmax
    with an all-ones target, ``-sum_c log softmax_c`` (computed with ``log_softmax``: finite
    where the probability underflows). Its per-parameter squared L2 gradient norms, summed over
    the parameters ``param_filter(name)`` selects (``None``: all, as pytorch-ood 0.4.0), are
    large for familiar inputs, so the sum is negated. The paper feeds the per-layer norms to a
    classifier trained on ID and OOD data; this scorer, like 0.4.0's, uses their plain sum.
    Takes the model and raw inputs; runs in PyTorch only (not exportable).
    """

    not_exportable_because = "it needs per-sample gradients w.r.t. the model's weights"

    def __init__(self, model: Any, param_filter: Callable[[str], bool] | None = None) -> None:
        super().__init__(model)
        self.param_filter = check_filter(type(self).__name__, param_filter)

    @staticmethod
    def _loss(logits: Tensor) -> Tensor:
        return -logits.log_softmax(dim=1).sum()

    def _score(self, x: Tensor) -> Tensor:
        norm = lambda g: (g * g).sum(1)  # noqa: E731
        return -grad_norms(self.model, x, self._loss, norm, self.param_filter, type(self).__name__)
