"""The KNN plugin passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import fit_clusters

CASES = [
    ScorerCase("knn", {"k": 3}, fit=fit_clusters),
    ScorerCase("KNN", {"k": 1, "normalize": False}, fit=fit_clusters, id="knn-raw-k1"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
