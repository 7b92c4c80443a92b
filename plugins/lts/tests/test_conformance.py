"""The LTS plugin passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head

CASES = [
    ScorerCase("lts", {"head": cluster_head(8, 4)}),
    ScorerCase("lts", {"head": cluster_head(8, 4), "p": 0.5}, id="lts-p0.5"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
