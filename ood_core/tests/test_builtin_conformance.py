"""The built-in plugin passes the conformance kit it ships."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

CASES = [
    LossCase("cross-entropy"),
    LossCase("cross-entropy", {"reduction": "sum"}, id="cross-entropy-sum"),
    ScorerCase("msp"),
    ScorerCase("max-logit"),
    ScorerCase("energy"),
    ScorerCase("energy", {"temperature": 2.5}, id="energy-T2.5"),
    ScorerCase("entropy"),
    ScorerCase("msp", from_loss=LossCase("cross-entropy"), id="cross-entropy.scorer()"),
]


@parametrize_with_checks(CASES)
def test_builtin_conformance(case, check):
    check(case)
