"""GradNorm: the norm of the gradient of KL(uniform || softmax) (Huang, Geng, Li, NeurIPS 2021)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ood_core.model_scoring import ModelScorer, check_filter, grad_norms
from ood_core.validation import check_positive_int, fail


class GradNorm(ModelScorer):
    """``-sum_w || d/dw KL(u || softmax(f(x) / T)) ||_1``, per sample.

    Huang, Geng, Li, "On the Importance of Gradients for Detecting Distributional Shifts in the
    Wild", NeurIPS 2021, eq. (3)-(4): the KL divergence between the uniform distribution ``u``
    over ``C`` classes and the softmax at temperature ``T``, computed as the cross-entropy
    ``-1/C sum_c log softmax_c`` (KL up to the constant ``log C``: same gradient). The paper's
    score is the L1 norm for the last layer's weights (higher = ID); negated here.
    ``param_filter(name)`` selects the weights ``w``; ``None`` (pytorch-ood 0.4.0's default)
    takes all parameters; the paper's setting is e.g. ``lambda n: n == "fc.weight"``.
    Per-sample gradients with ``torch.func`` (``vmap`` of ``grad``), ``micro_batch_size``
    samples at a time. Takes the model and raw inputs; runs in PyTorch only (not exportable).
    """

    not_exportable_because = "it needs per-sample gradients w.r.t. the model's weights"

    def __init__(
        self,
        model: Any,
        param_filter: Callable[[str], bool] | None = None,
        micro_batch_size: int = 32,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(model)
        owner = type(self).__name__
        self.param_filter = check_filter(owner, param_filter)
        self.micro_batch_size = check_positive_int(owner, "micro_batch_size", micro_batch_size)
        t = float(temperature) if isinstance(temperature, (int, float)) else float("nan")
        if isinstance(temperature, bool) or not 0 < t < float("inf"):
            raise fail(owner, "temperature", "a finite number > 0", repr(temperature))
        self.temperature = t

    def _loss(self, logits: Tensor) -> Tensor:
        return -(logits / self.temperature).log_softmax(dim=1).mean()

    def _score(self, x: Tensor) -> Tensor:
        return -grad_norms(
            self.model,
            x,
            self._loss,
            lambda g: g.abs().sum(1),
            self.param_filter,
            type(self).__name__,
            self.micro_batch_size,
        )
