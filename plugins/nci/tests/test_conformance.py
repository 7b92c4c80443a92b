"""The nci plugin passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head, fit_clusters

CASES = [
    ScorerCase("nci", {"head": cluster_head(8, 4)}, fit=fit_clusters),
    ScorerCase("nci", {"head": cluster_head(8, 4), "alpha": 0.1}, fit=fit_clusters, id="nci-l1"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
