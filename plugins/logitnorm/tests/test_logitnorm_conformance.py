"""The logitnorm plugin passes the oodx conformance kit."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

LOGITNORM = LossCase("logitnorm")

CASES = [
    LOGITNORM,
    LossCase("logitnorm", {"t": 0.04, "reduction": "sum"}, id="logitnorm-t0.04-sum"),
    ScorerCase("msp", from_loss=LOGITNORM, id="logitnorm.scorer()"),
]


@parametrize_with_checks(CASES)
def test_logitnorm_conformance(case, check):
    check(case)
