"""Test-time weighted energy scorer of VOS."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed
from ood_plugin_vos.functional import weighted_energy


class WeightedEnergyScore(Scorer):
    """Weighted energy ``E(x) = -log sum_c relu(w_c) exp(f_c(x))`` of the logits (higher = more OOD).

    Du et al., "VOS: Learning What You Don't Know by Virtual Outlier Synthesis", ICLR 2022: the
    test-time score of a model trained with :class:`~ood_plugin_vos.loss.VOSRegLoss` or
    :class:`~ood_plugin_vos.loss.VirtualOutlierSynthesizingRegLoss`, whose ``scorer()`` returns
    this module with a copy of the learned weights. ``weights`` (``(C,)`` or ``(1, C)``, e.g.
    ``Linear(C, 1).weight``, or that ``Linear`` itself) is kept in a buffer; with only ``num_classes`` every weight is 1 (the
    plain free energy). Classification ``(B, C)`` and segmentation ``(B, C, H, W)``.

    Differs from pytorch-ood 0.4.0 (``WeightedEBO``): computed by the same max-subtracted
    :func:`~ood_plugin_vos.functional.weighted_energy` as the training loss, so large logits do
    not overflow to ``-inf`` and all-non-positive weights give a finite score instead of ``inf``.
    """

    reads = "logits"
    weights: Tensor

    def __init__(self, weights: Tensor | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        if weights is None:
            if num_classes is None or int(num_classes) < 1:
                raise ValueError(
                    "WeightedEnergyScore: argument 'weights' or 'num_classes' must be given "
                    f"(a weight tensor or a positive class count), got weights=None, "
                    f"num_classes={num_classes!r}"
                )
            weights = torch.ones(int(num_classes))
        if isinstance(weights, torch.nn.Module):  # e.g. the Linear(C, 1) VOS trained
            weights = getattr(weights, "weight", weights)
        if not isinstance(weights, Tensor) or not weights.is_floating_point():
            raise fail(
                "WeightedEnergyScore",
                "weights",
                "a floating tensor of shape (C,) or (1, C)",
                weights,
            )
        weights = weights.detach().clone().reshape(-1)
        if num_classes is not None and weights.numel() != int(num_classes):
            raise fail(
                "WeightedEnergyScore", "weights", f"{num_classes} entries (num_classes)", weights
            )
        self.register_buffer("weights", weights)

    @classmethod
    def from_loss(cls, loss: torch.nn.Module) -> WeightedEnergyScore:
        """The scorer of a trained VOS loss, holding a copy of its energy weights."""
        return cls(weights=loss.weights_energy.weight)

    def forward(self, logits: Tensor) -> Tensor:
        owner = type(self).__name__
        x = check_float(owner, "logits", logits, ranks=(2, 4))
        if x.shape[1] != self.weights.shape[0]:
            raise fail(owner, "logits", f"{self.weights.shape[0]} classes in dim 1", x)
        return fail_closed(weighted_energy(x, self.weights, dim=1))
