"""The GradUncertainty scorer passes the oodx conformance kit (export checks become the refusal check)."""

import torch
from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 4))


MODEL = _model()
CASES = [
    ScorerCase("grad-uncertainty", {"model": MODEL}),
    ScorerCase(
        "GradUncertainty",
        {"model": MODEL, "param_filter": lambda n: n == "3.weight"},
        id="grad-uncertainty-last-layer",
    ),
]


@parametrize_with_checks(CASES)
def test_grad_uncertainty_conformance(case, check):
    check(case)
