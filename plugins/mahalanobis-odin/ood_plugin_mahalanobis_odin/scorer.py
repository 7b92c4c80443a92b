"""Mahalanobis distance after input preprocessing (Lee, Lee, Lee, Shin, NeurIPS 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ood_plugin_mahalanobis.scorer import Mahalanobis
from torch import Tensor, nn

from ood_core.model_scoring import (
    check_model,
    closed_scores,
    input_step,
    model_inputs,
    model_kept,
)
from ood_core.validation import fail


class MahalanobisODIN(Mahalanobis):
    """``min_k d_k(g(x'))`` with ``x' = x - eps * sign(grad_x min_k d_k(g(x)))``.

    Lee, Lee, Lee, Shin, NeurIPS 2018, eq. (4) and Algorithm 1: the input moves one signed
    gradient step that lowers the Mahalanobis distance ``d_k`` of its features ``g(x)`` to the
    closest class mean (the paper raises the confidence ``-d``), then the ``mahalanobis``
    score of ``g(x')`` is returned. ``encoder`` is the feature extractor ``g``, ``eps`` the step
    in input units (per channel divided by ``norm_std``). Fit as ``mahalanobis``: on features
    ``g(x)`` with labels (``fit(features, y)``, 0.4.0's ``fit_features``); ``ridge`` is
    ``mahalanobis``' ``eps``. Scores are pytorch-ood 0.4.0's times ``2 N`` (see
    ``Mahalanobis``). Runs the encoder in PyTorch (not exportable); it is not part of the state.
    """

    reads = "inputs"
    not_exportable_because = "it moves the input along the sign of the input gradient"
    model: nn.Module

    def __init__(
        self,
        encoder: Any,
        eps: float = 0.002,
        norm_std: Sequence[float] | None = None,
        *,
        ridge: float | None = None,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__(None, eps=ridge, head=head)
        owner = type(self).__name__
        object.__setattr__(self, "model", check_model(owner, encoder, "encoder"))
        step = float(eps) if isinstance(eps, (int, float)) and not isinstance(eps, bool) else -1.0
        if not 0 <= step < float("inf"):
            raise fail(owner, "eps", "a finite step size >= 0", repr(eps))
        if norm_std is not None and not all(float(s) > 0 for s in norm_std):
            raise fail(owner, "norm_std", "None or per-channel standard deviations > 0", norm_std)
        self.step, self.norm_std = step, norm_std

    def forward(self, x: Tensor) -> Tensor:
        """Outlier scores of the inputs ``x`` ``(B, ...)``."""
        self._check_fitted()
        owner = type(self).__name__
        x = model_inputs(owner, self.model, x)
        with model_kept(self.model):
            x = x.requires_grad_()
            d, _ = self._distances(self.model(x).flatten(1))
            x_hat = input_step(x, d.min(dim=2).values.sum(), self.step, self.norm_std, owner)
            scores = super().forward(self.model(x_hat.detach()).flatten(1).detach())
        return closed_scores(x, scores)

    def predict(self, x: Tensor) -> Tensor:
        """The class whose mean is closest to the features of the unperturbed inputs."""
        with model_kept(self.model):
            z = self.model(model_inputs(type(self).__name__, self.model, x)).flatten(1)
            return super().predict(z.detach())
