"""The CAC plugin passes the oodx conformance kit."""

from __future__ import annotations

import torch
from ood_plugin_cac.loss import anchor_distances

from ood_core.testing import (
    InputSpec,
    LossCase,
    ScorerCase,
    default_inputs,
    parametrize_with_checks,
)


def _distances_to_unit_anchors(spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward arguments of CACLoss: Euclidean distances (B, C) to the anchors, and targets."""
    z, target = default_inputs(spec, ("embedding", "target"))
    anchors = torch.eye(spec.num_classes, device=z.device)
    distances = anchor_distances(z.detach(), anchors).to(spec.dtype)
    return distances.requires_grad_(True), target


CAC = LossCase(
    "cac", {"n_classes": 4}, num_classes=4, dim=4, make_inputs=_distances_to_unit_anchors
)
CAC_SCALED = LossCase(
    "cac",
    {"n_classes": 4, "magnitude": 3.0, "alpha": 0.2},
    num_classes=4,
    dim=4,
    make_inputs=_distances_to_unit_anchors,
    id="cac-m3-a0.2",
)

CASES = [
    CAC,
    CAC_SCALED,
    ScorerCase("cac", {"n_classes": 4}, num_classes=4, dim=4),
    ScorerCase("cac", {"n_classes": 4, "magnitude": 10.0}, num_classes=4, dim=4, id="cac-m10"),
    ScorerCase("cac", from_loss=CAC_SCALED, num_classes=4, dim=4, id="cac-m3.scorer()"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
