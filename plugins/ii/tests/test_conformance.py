"""The II plugin passes the oodx conformance kit."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

II = LossCase("ii", {"n_classes": 4, "n_embedding": 8})
II_ALPHA = LossCase("ii", {"n_classes": 4, "n_embedding": 8, "alpha": 0.3}, id="ii-a0.3")

CASES = [
    II,
    II_ALPHA,
    ScorerCase("ii", {"n_classes": 4, "n_embedding": 8}),
    ScorerCase("ii", from_loss=II, id="ii.scorer()"),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
