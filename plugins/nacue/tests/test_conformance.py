"""The NAC-UE scorer passes the oodx conformance kit (export checks become the refusal check)."""

import torch
from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import tiny_classifier


def _model() -> nn.Module:
    return tiny_classifier()


def fit_inputs(scorer, spec, n=64):
    g = torch.Generator().manual_seed(spec.seed)
    scorer.fit(torch.randn(n, spec.dim, generator=g))


MODEL = _model()
CASES = [
    ScorerCase("nacue", {"model": MODEL, "layers": [MODEL[1]], "o_star": 5}, fit=fit_inputs),
    ScorerCase(
        "NACUE",
        {"model": MODEL, "layers": [MODEL[0], MODEL[3]], "m_bins": [8, 20], "alpha": [10.0, 1.0]},
        fit=fit_inputs,
        id="nacue-two-layers",
    ),
]


@parametrize_with_checks(CASES)
def test_nacue_conformance(case, check):
    check(case)
