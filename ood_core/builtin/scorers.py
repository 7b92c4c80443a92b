"""Built-in post-hoc scorers on logits (classification and segmentation)."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.arguments import check_positive
from ood_core.functional import energy
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail_closed


def _temperature(owner: Scorer, temperature: float | None, t: float | None) -> float:
    """``temperature``, or pytorch-ood 0.4.0's name for it, ``t`` (not both); must be > 0."""
    name = type(owner).__name__
    if temperature is not None and t is not None:
        raise TypeError(f"{name}: give 'temperature' or its pytorch-ood 0.4.0 name 't', not both")
    value, arg = (t, "t") if t is not None else (temperature, "temperature")
    return check_positive(name, arg, 1.0 if value is None else value)


def _logits(owner: Scorer, logits: Tensor) -> Tensor:
    # -inf masks a class (every sample keeps a finite logit); NaN and +inf are refused
    x = check_float(type(owner).__name__, "logits", logits, ranks=(2, 4), masks=True)
    return x.to(compute_dtype(x.dtype))


class MaxSoftmax(Scorer):
    """Negative maximum softmax probability, ``-max_c softmax(f(x) / T)_c``.

    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples
    in Neural Networks", ICLR 2017. The temperature ``T`` (default 1, pytorch-ood 0.4.0's keyword
    ``t`` accepted) must be > 0.
    """

    def __init__(self, temperature: float | None = None, *, t: float | None = None) -> None:
        super().__init__()
        self.temperature = _temperature(self, temperature, t)

    def forward(self, logits: Tensor) -> Tensor:
        x = _logits(self, logits) / self.temperature
        return fail_closed(-torch.softmax(x, dim=1).amax(dim=1))


class MaxLogit(Scorer):
    """Negative maximum logit, ``-max_c f_c(x)``.

    Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022.
    """

    def forward(self, logits: Tensor) -> Tensor:
        return fail_closed(-_logits(self, logits).amax(dim=1))


class EnergyScore(Scorer):
    """Free energy ``-T log sum_c exp(f_c(x) / T)`` (higher = more OOD), ``T > 0`` (default 1;
    pytorch-ood 0.4.0's keyword ``t`` accepted).

    Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020.
    """

    def __init__(self, temperature: float | None = None, *, t: float | None = None) -> None:
        super().__init__()
        self.temperature = _temperature(self, temperature, t)

    def forward(self, logits: Tensor) -> Tensor:
        return fail_closed(energy(_logits(self, logits), self.temperature))


class Entropy(Scorer):
    """Shannon entropy of the softmax, ``-sum_c p_c log p_c`` with ``p = softmax(f(x))``.

    A masked class (``-inf`` logit, ``p_c = 0``) contributes ``0 log 0 = 0``.
    """

    def forward(self, logits: Tensor) -> Tensor:
        logp = torch.log_softmax(_logits(self, logits), dim=1)
        p = logp.exp()
        # 0 log 0 = 0: keep log p of masked classes (-inf) out of the product and its gradient
        safe = torch.where(p > 0, logp, torch.zeros_like(logp))
        return fail_closed(-(p * safe).sum(dim=1))
