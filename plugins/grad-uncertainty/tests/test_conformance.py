"""The GradUncertainty scorer passes the oodx conformance kit (export checks become the refusal check)."""

from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import tiny_classifier


def _model() -> nn.Module:
    return tiny_classifier()


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
