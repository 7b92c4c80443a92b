"""The GMM plugin passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import fit_clusters

CASES = [
    ScorerCase("gmm", fit=fit_clusters),
    ScorerCase("gmm", {"reg": 0.5}, fit=fit_clusters, id="gmm-reg"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
