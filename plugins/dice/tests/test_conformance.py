"""The DICE plugin passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head, fit_clusters

CASES = [ScorerCase("dice", {"head": cluster_head(8, 4), "p": 0.7}, fit=fit_clusters)]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
