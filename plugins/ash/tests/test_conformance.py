"""The ASH plugin passes the oodx conformance kit in each variant."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head

CASES = [
    ScorerCase("ash", {"head": cluster_head(8, 4), "variant": v}, id=v)
    for v in ("ash-p", "ash-b", "ash-s")
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
