"""The ODIN scorer passes the oodx conformance kit (export checks become the refusal check)."""

import torch
from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))


MODEL = _model()
CASES = [
    ScorerCase("odin", {"model": MODEL}),
    ScorerCase("ODIN", {"model": MODEL, "eps": 0.01, "temperature": 10.0}, id="odin-alias"),
]


@parametrize_with_checks(CASES)
def test_odin_conformance(case, check):
    check(case)
