"""The confidence plugin passes the oodx conformance kit."""

import torch

from ood_core.testing import (
    InputSpec,
    LossCase,
    ScorerCase,
    default_inputs,
    parametrize_with_checks,
)


def make_inputs(spec: InputSpec, flat: bool = False) -> tuple:
    """Class logits ``(B, C)``, a confidence leaf in (0, 1) of shape ``(B, 1)`` (or ``(B,)``), targets."""
    logits, target = default_inputs(spec, ("logits", "target"))
    g = torch.Generator().manual_seed(spec.seed + 1000)
    shape = (logits.shape[0],) if flat else (logits.shape[0], 1)
    confidence = (0.05 + 0.9 * torch.rand(shape, generator=g)).to(spec.device, spec.dtype)
    return logits, confidence.requires_grad_(), target


def make_flat_inputs(spec: InputSpec) -> tuple:
    return make_inputs(spec, flat=True)


CONFIDENCE = LossCase("confidence", make_inputs=make_inputs)

CASES = [
    CONFIDENCE,
    LossCase(
        "confidence",
        {"alpha": 0.3, "eps": 1e-12},
        make_inputs=make_flat_inputs,
        id="confidence-a0.3-flat",
    ),
    ScorerCase("confidence"),
    ScorerCase("confidence", from_loss=CONFIDENCE, id="confidence.scorer()"),
]


@parametrize_with_checks(CASES)
def test_confidence_conformance(case, check):
    check(case)
