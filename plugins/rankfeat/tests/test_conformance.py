"""The RankFeat plugin passes the oodx conformance kit (on (B, C, H, W) feature maps)."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head

CASES = [
    ScorerCase("rankfeat", {"head": cluster_head(8, 4)}),
    ScorerCase("rankfeat", {"head": cluster_head(8, 4), "iterations": 3}, id="rankfeat-3"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
