"""The VRA plugin passes the oodx conformance kit (0.4.0's clamp and the paper's operator)."""

from __future__ import annotations

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head


def fit_maps(scorer, spec, n=40):
    """Fit on ``n`` feature maps of the spec's width and spatial size (what the kit scores)."""
    g = torch.Generator().manual_seed(spec.seed)
    scorer.fit(torch.randn(n, spec.dim, *spec.spatial, generator=g), torch.arange(n) % 4)


CASES = [
    ScorerCase("vra", {"head": cluster_head(8, 4)}, fit=fit_maps),
    ScorerCase("vra", {"head": cluster_head(8, 4), "gamma": 0.5}, fit=fit_maps, id="vra-gamma"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
