"""The center-loss plugin passes the oodx conformance kit."""

from __future__ import annotations

import torch

from ood_core.testing import InputSpec, LossCase, ScorerCase, parametrize_with_checks
from ood_core.testing.cases import make_float, make_target


def _squared_distances(spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward arguments of CenterLoss: squared distances (B, C) >= 0, and targets."""
    g = torch.Generator().manual_seed(spec.seed)
    batch = 0 if spec.mode == "empty" else spec.batch
    distmat = make_float(spec, (batch, spec.num_classes), g).detach() ** 2
    return distmat.requires_grad_(True), make_target(spec, (batch,), g)


CENTER = LossCase("center", {"n_classes": 4, "n_dim": 8}, make_inputs=_squared_distances)
CENTER_FIXED = LossCase(
    "center",
    {"n_classes": 4, "n_dim": 4, "magnitude": 5.0, "radius": 1.5, "fixed": True},
    dim=4,
    make_inputs=_squared_distances,
    id="center-fixed-r1.5",
)

CASES = [
    CENTER,
    CENTER_FIXED,
    ScorerCase("center", {"n_classes": 4, "n_dim": 8}),
    ScorerCase("center", from_loss=CENTER, id="center.scorer()"),
    ScorerCase("center", from_loss=CENTER_FIXED, dim=4, id="center-fixed.scorer()"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
