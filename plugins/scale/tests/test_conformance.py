"""The SCALE plugin passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head

CASES = [ScorerCase("scale", {"head": cluster_head(8, 4)})]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
