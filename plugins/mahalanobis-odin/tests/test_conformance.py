"""The Mahalanobis-ODIN scorer passes the oodx conformance kit (fitted on encoder features)."""

import torch
from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))


ENCODER = _encoder()


def _fit(scorer, spec):
    g = torch.Generator().manual_seed(spec.seed)
    x = torch.randn(60, spec.dim, generator=g)
    scorer.fit(ENCODER(x).detach(), torch.arange(60) % spec.num_classes)


CASES = [
    ScorerCase("mahalanobis-odin", {"encoder": ENCODER}, fit=_fit),
    ScorerCase("MahalanobisODIN", {"encoder": ENCODER, "eps": 0.05}, fit=_fit, id="alias"),
]


@parametrize_with_checks(CASES)
def test_mahalanobis_odin_conformance(case, check):
    check(case)
