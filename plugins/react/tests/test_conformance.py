"""The ReAct plugin passes the oodx conformance kit (fitted, and with a given threshold)."""

from __future__ import annotations

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head, fit_clusters

CASES = [
    ScorerCase("react", {"head": cluster_head(8, 4)}, fit=fit_clusters),
    ScorerCase(
        "react",
        {"head": cluster_head(8, 4), "threshold": 1.0},
        id="react-threshold",
        skip={"check_scorer_fit": "a given threshold scores before fit (test_react.py)"},
    ),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
