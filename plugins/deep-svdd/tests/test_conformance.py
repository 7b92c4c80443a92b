"""The Deep SVDD plugin passes the oodx conformance kit."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

# no classes: any target >= 0 is the normal class, so "target >= C" is not bad input
_NO_CLASSES = {"target_range": "one-class loss: every target >= 0 is the normal class"}
SVDD = LossCase("deep-svdd", {"n_dim": 8}, skip=_NO_CLASSES)
SVDD_SOFT = LossCase(
    "deep-svdd",
    {"n_dim": 8, "radius": 0.7, "reduction": "sum"},
    skip=_NO_CLASSES,
    id="deep-svdd-r0.7-sum",
)
SAD = LossCase("deep-sad", {"n_dim": 8}, skip=_NO_CLASSES)
SAD_SUM = LossCase(
    "deep-sad", {"n_dim": 8, "eta": 2.5, "reduction": "sum"}, skip=_NO_CLASSES, id="deep-sad-sum"
)

CASES = [
    SVDD,
    SVDD_SOFT,
    SAD,
    SAD_SUM,
    ScorerCase("deep-svdd", {"n_dim": 8}),
    ScorerCase("deep-svdd", {"n_dim": 8, "radius": 1.5}, id="deep-svdd-r1.5"),
    ScorerCase("deep-svdd", from_loss=SVDD_SOFT, id="deep-svdd-r0.7.scorer()"),
    ScorerCase("deep-svdd", from_loss=SAD, id="deep-sad.scorer()"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
