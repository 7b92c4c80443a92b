"""The ODIN scorer passes the oodx conformance kit (export checks become the refusal check)."""

from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import tiny_classifier


def _model() -> nn.Module:
    return tiny_classifier(nn.ReLU, 0.3)


MODEL = _model()
CASES = [
    ScorerCase("odin", {"model": MODEL}),
    ScorerCase("ODIN", {"model": MODEL, "eps": 0.01, "temperature": 10.0}, id="odin-alias"),
]


@parametrize_with_checks(CASES)
def test_odin_conformance(case, check):
    check(case)
