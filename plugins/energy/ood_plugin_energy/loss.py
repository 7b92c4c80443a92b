"""The energy-bounded regularisation loss of Liu et al. (NeurIPS 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ood_core.arguments import check_real
from ood_core.functional import nll_and_logsumexp
from ood_core.labels import is_known, is_unknown
from ood_core.loss import Loss
from ood_core.reduction import Reduction, apply_reduction, check_reduction, masked_mean
from ood_core.validation import check_classification


class EnergyRegularizedLoss(Loss):
    """Cross-entropy with an energy-bounded regulariser that separates ID and outlier energies.

    With the free energy ``E(x) = -log sum_c exp(f_c(x))``::

        L = mean_ID CE(f(x), y)
            + alpha * ( mean_ID max(0, E(x) - m_in)^2 + mean_OOD max(0, m_out - E(x))^2 )

    Liu, Wang, Owens, Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020 (the
    energy-bounded fine-tuning objective; defaults ``alpha = 0.1``, ``m_in = -25``, ``m_out = -7`` as for CIFAR).
    Targets ``< 0`` are outliers. Each expectation averages over its own samples, so the ID/OOD
    mix of a batch does not weight the terms; an absent group contributes 0 (graph kept).
    Classification ``(B, C)`` and segmentation ``(B, C, H, W)``, where every pixel is a sample.
    ``reduction="none"`` gives the per-sample (per-pixel) ``CE + alpha * hinge^2`` with CE = 0 for
    outliers, ``"sum"`` their sum. Computed in at least fp32. Natural scorer: the built-in
    ``energy`` (:class:`ood_core.builtin.scorers.EnergyScore`).

    Differs from pytorch-ood 0.4.0 only in robustness, not in value: fp16/bf16 logits are computed
    in fp32 (0.4.0 squares fp16 energies and overflows to ``inf`` for large logits), invalid
    arguments raise ``ValueError`` naming the argument, and the forward has no data-dependent
    branching, so it compiles with ``torch.compile(fullgraph=True)``.
    """

    roles = {"logits": "logits", "targets": "target"}

    def __init__(
        self,
        alpha: float = 0.1,
        margin_in: float = -25.0,
        margin_out: float = -7.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        # attribute names as in pytorch-ood 0.4.0
        self.alpha = check_real(owner, "alpha", alpha, minimum=0.0)
        self.m_in = check_real(owner, "margin_in", margin_in)
        self.m_out = check_real(owner, "margin_out", margin_out)
        self.reduction = check_reduction(reduction, owner)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss for ``logits`` ``(B, C[, H, W])`` and ``targets`` ``(B[, H, W])`` (``< 0``: OOD)."""
        logits, targets = check_classification(type(self).__name__, logits, targets, masks=True)
        nll, lse = nll_and_logsumexp(logits, targets)  # nll is 0 on outliers
        e = -lse
        known = is_known(targets)
        hinge = torch.where(known, torch.relu(e - self.m_in) ** 2, torch.relu(self.m_out - e) ** 2)
        if self.reduction == "mean":
            regulariser = masked_mean(hinge, known) + masked_mean(hinge, is_unknown(targets))
            return masked_mean(nll, known) + self.alpha * regulariser
        return apply_reduction(nll + self.alpha * hinge, self.reduction, type(self).__name__)

    def scorer(self) -> nn.Module:
        """The natural scorer, the built-in free energy ``-logsumexp(logits)`` (temperature 1)."""
        from ood_core.builtin.scorers import EnergyScore

        return EnergyScore()
