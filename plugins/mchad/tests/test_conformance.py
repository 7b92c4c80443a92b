"""The MCHAD loss and scorer pass the oodx conformance kit."""

from __future__ import annotations

import torch

from ood_core.testing import (
    InputSpec,
    LossCase,
    ScorerCase,
    default_inputs,
    parametrize_with_checks,
)


def distmat_inputs(spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances ``(B, K)`` (non-negative, requiring grad) and labels with -1 = OOD."""
    (target,) = default_inputs(spec, ("target",))
    g = torch.Generator().manual_seed(spec.seed + 1)
    d = torch.randn(target.shape[0], spec.num_classes, generator=g) ** 2 * 2.0
    return d.to(device=spec.device, dtype=spec.dtype).requires_grad_(True), target


BASE = {"n_classes": 4, "n_dim": 8}
DEFAULT = LossCase("mchad", BASE, make_inputs=distmat_inputs)
CASES = [
    DEFAULT,
    LossCase(
        "mchad",
        {**BASE, "radius": 1.0, "margin": 0.5, "weight_center": 0.5, "weight_oe": 0.1},
        make_inputs=distmat_inputs,
        id="mchad-r1-m0.5",
    ),
    LossCase(
        "mchad",
        {"n_classes": 4, "n_dim": 4, "radius": 0.3},
        dim=4,
        make_inputs=distmat_inputs,
        id="mchad-square",
    ),
    ScorerCase("mchad", BASE),
    ScorerCase("mchad", {"n_classes": 3, "n_dim": 5}, num_classes=3, dim=5, id="mchad-3x5"),
    ScorerCase("mchad", from_loss=DEFAULT, id="mchad.scorer()"),
]


@parametrize_with_checks(CASES)
def test_mchad_conformance(case, check):
    check(case)
