"""The entropic plugin passes the oodx conformance kit."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

ENTROPIC = LossCase("entropic-open-set")
OBJECTOSPHERE = LossCase("objectosphere")

CASES = [
    ENTROPIC,
    LossCase("entropic-open-set", {"reduction": "sum"}, id="entropic-open-set-sum"),
    OBJECTOSPHERE,
    LossCase(
        "objectosphere",
        {"alpha": 0.5, "xi": 3.0, "reduction": "sum"},
        id="objectosphere-a0.5-xi3-sum",
    ),
    ScorerCase("objectosphere"),
    ScorerCase("objectosphere", from_loss=OBJECTOSPHERE, id="objectosphere.scorer()"),
    ScorerCase("msp", from_loss=ENTROPIC, id="entropic-open-set.scorer()"),
]


@parametrize_with_checks(CASES)
def test_entropic_conformance(case, check):
    check(case)
