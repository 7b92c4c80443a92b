"""Built-in post-hoc scorers on logits (classification and segmentation)."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.functional import energy
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float


def _logits(owner: Scorer, logits: Tensor) -> Tensor:
    x = check_float(type(owner).__name__, "logits", logits, ranks=(2, 4))
    return x.to(compute_dtype(x.dtype))


class MaxSoftmax(Scorer):
    """Negative maximum softmax probability, ``-max_c softmax(f(x))_c``.

    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples
    in Neural Networks", ICLR 2017.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, logits: Tensor) -> Tensor:
        x = _logits(self, logits) / self.temperature
        return -torch.softmax(x, dim=1).amax(dim=1)


class MaxLogit(Scorer):
    """Negative maximum logit, ``-max_c f_c(x)``.

    Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022.
    """

    def forward(self, logits: Tensor) -> Tensor:
        return -_logits(self, logits).amax(dim=1)


class EnergyScore(Scorer):
    """Free energy ``-T log sum_c exp(f_c(x) / T)`` (higher = more OOD).

    Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(
                f"EnergyScore: argument 'temperature' must be > 0, got {temperature!r}"
            )
        self.temperature = float(temperature)

    def forward(self, logits: Tensor) -> Tensor:
        return energy(_logits(self, logits), self.temperature)


class Entropy(Scorer):
    """Shannon entropy of the softmax, ``-sum_c p_c log p_c`` with ``p = softmax(f(x))``."""

    def forward(self, logits: Tensor) -> Tensor:
        logp = torch.log_softmax(_logits(self, logits), dim=1)
        return -(logp.exp() * logp).sum(dim=1)
