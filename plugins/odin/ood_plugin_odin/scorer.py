"""ODIN: temperature scaling and input perturbation (Liang, Li, Srikant, ICLR 2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ood_core.model_scoring import ModelScorer, input_step
from ood_core.validation import fail


def check_positive(owner: str, arg: str, value: Any, *, zero: bool = False) -> float:
    """``value`` must be a finite number ``> 0`` (``>= 0`` with ``zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not (v >= 0 if zero else v > 0) or v == float("inf"):
        raise fail(owner, arg, f"a finite number {'>= 0' if zero else '> 0'}", repr(value))
    return v


class ODIN(ModelScorer):
    """``-max_c softmax(f(x') / T)_c`` with ``x' = x - eps * sign(grad_x L(f(x) / T, y_hat))``.

    Liang, Li, Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection in
    Neural Networks", ICLR 2018, eqs. (1)-(2): ``L`` is the cross-entropy of the predicted class
    ``y_hat`` at temperature ``T`` (``criterion`` replaces it), ``eps`` the perturbation size
    (divided per channel by ``norm_std`` when the inputs are normalised). The paper's score is
    the max softmax of ``x'``; negated here (higher = more OOD). Takes the model and raw inputs;
    runs in PyTorch only (not exportable). Keywords as pytorch-ood 0.4.0's ``ODIN``.
    """

    not_exportable_because = "it perturbs the input along the sign of the input gradient"

    def __init__(
        self,
        model: Any,
        criterion: Callable[[Tensor, Tensor], Tensor] | None = None,
        eps: float = 0.0014,
        temperature: float = 1000.0,
        norm_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__(model)
        owner = type(self).__name__
        if criterion is not None and not callable(criterion):
            raise fail(owner, "criterion", "None or a callable (logits, target) -> loss", criterion)
        self.criterion = criterion
        self.eps = check_positive(owner, "eps", eps, zero=True)
        self.temperature = check_positive(owner, "temperature", temperature)
        self.norm_std = (
            None if norm_std is None else [check_positive(owner, "norm_std", s) for s in norm_std]
        )

    def _score(self, x: Tensor) -> Tensor:
        if x.shape[0] == 0:
            return x.new_zeros(0)
        x = x.requires_grad_()
        logits = self.model(x) / self.temperature
        y_hat = logits.argmax(dim=1)
        if self.criterion is None:  # summed: each sample's step depends on its own loss only
            loss = F.cross_entropy(logits, y_hat, reduction="sum")
        else:
            loss = self.criterion(logits, y_hat)
        x_hat = input_step(x, loss, self.eps, self.norm_std, type(self).__name__)
        with torch.no_grad():
            logits = self.model(x_hat) / self.temperature
        return -logits.softmax(dim=1).amax(dim=1)
