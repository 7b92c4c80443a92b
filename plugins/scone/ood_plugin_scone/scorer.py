"""The SCONE scorer: the logistic head of the loss applied to the energy score."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ood_core.arguments import check_real
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed

Head = Callable[[Tensor], Tensor]


def head_logit(owner: str, head: Head, lse: Tensor, dtype: torch.dtype) -> Tensor:
    """``phi(lse)`` of shape ``(B,)`` for ``lse = logsumexp(logits)`` of shape ``(B,)``.

    ``head`` maps ``(B, 1)`` to ``(B, 1)`` (or ``(B,)``), for example ``nn.Linear(1, 1)``. An
    ``nn.Linear`` is evaluated in ``dtype`` (its parameters are cast, gradients still reach
    them); any other module gets its input in the dtype of its first parameter.
    """
    if not callable(head):
        raise fail(
            owner,
            "logistic_regression",
            "a callable mapping (B, 1) energies to (B, 1) logits, e.g. torch.nn.Linear(1, 1)",
            head,
        )
    x = lse.unsqueeze(1)
    if isinstance(head, nn.Linear):
        if head.in_features != 1 or head.out_features != 1:
            raise fail(
                owner,
                "logistic_regression",
                "a torch.nn.Linear(1, 1)",
                f"Linear({head.in_features}, {head.out_features})",
            )
        bias = None if head.bias is None else head.bias.to(dtype)
        out = F.linear(x, head.weight.to(dtype), bias)
    else:
        param = next(iter(head.parameters()), None) if isinstance(head, nn.Module) else None
        out = head(x if param is None else x.to(param.dtype))
        if not isinstance(out, Tensor):
            raise fail(owner, "logistic_regression", "a callable returning a tensor", out)
        out = out.to(dtype)
    batch = lse.shape[0]
    if tuple(out.shape) not in ((batch, 1), (batch,)):
        raise fail(
            owner,
            "logistic_regression",
            f"a callable returning one logit per sample, shape ({batch}, 1)",
            out,
        )
    return out.reshape(batch)


class SconeScorer(Scorer):
    """Outlier score ``phi(log sum_c exp f_c(x))``: the SCONE logistic head on the energy.

    Bai et al., "Feed Two Birds with One Scone: Exploiting Wild Data for Both
    Out-of-Distribution Generalization and Detection", ICML 2023. SCONE trains a logistic
    regression ``phi`` on the negative free energy ``logsumexp_c f_c(x)`` so that
    ``sigmoid(phi)`` is the probability that a sample is OOD (the loss penalises
    ``sigmoid(phi)`` on ID data and ``sigmoid(-phi)`` on outliers). The score is the logit
    ``phi(.)`` itself (higher = more OOD; no saturation, so large outputs keep their order).
    For a trained head with a negative slope this ranks samples as the energy score does,
    which is what the paper thresholds. Reads logits ``(B, C)``; :meth:`predict` is the argmax.

    Get the trained head with ``EnergyMarginLoss.scorer()`` (a copy) or :meth:`from_head`.
    ``SconeScorer(weight, bias)`` builds the affine head ``phi(e) = weight * e + bias``; the
    default ``phi(e) = -e`` is the plain energy score ``-logsumexp``.
    """

    reads = "logits"

    def __init__(self, weight: float = -1.0, bias: float = 0.0) -> None:
        super().__init__()
        owner = type(self).__name__
        head = nn.Linear(1, 1)
        with torch.no_grad():
            head.weight.fill_(check_real(owner, "weight", weight))
            head.bias.fill_(check_real(owner, "bias", bias))
        self.logistic_regression: nn.Module = head.requires_grad_(False)

    @classmethod
    def from_head(cls, logistic_regression: nn.Module) -> SconeScorer:
        """A scorer holding a frozen copy of the logistic head ``logistic_regression``."""
        if not isinstance(logistic_regression, nn.Module):
            raise fail(
                cls.__name__,
                "logistic_regression",
                "a torch.nn.Module (the scorer keeps a copy of it), e.g. torch.nn.Linear(1, 1)",
                logistic_regression,
            )
        scorer = cls()
        head = copy.deepcopy(logistic_regression).requires_grad_(False)
        scorer.logistic_regression = head
        return scorer

    def forward(self, logits: Tensor) -> Tensor:
        """Outlier scores ``(B,)`` for logits ``(B, C)``."""
        owner = type(self).__name__
        x = check_float(owner, "logits", logits, ranks=(2,), masks=True)
        x = x.to(compute_dtype(x.dtype))
        lse = torch.logsumexp(x, dim=1)
        return fail_closed(head_logit(owner, self.logistic_regression, lse, x.dtype))
