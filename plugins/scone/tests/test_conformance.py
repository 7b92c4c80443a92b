"""EnergyMarginLoss and SconeScorer pass the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

DEFAULT = LossCase("scone", {"full_train_loss": 0.5})
CASES = [
    DEFAULT,
    LossCase(
        "energy-margin",
        {
            "full_train_loss": 0.05,
            "eta": 3.0,
            "false_alarm_cutoff": 0.2,
            "in_constraint_weight": 0.5,
            "ce_tol": 1.0,
            "ce_constraint_weight": 4.0,
            "out_constraint_weight": 0.3,
        },
        id="scone-tight",
    ),
    ScorerCase("scone"),
    ScorerCase("scone", {"weight": 0.7, "bias": -2.0}, id="scone-affine"),
    ScorerCase("scone", from_loss=DEFAULT, id="scone.scorer()"),
]


@parametrize_with_checks(CASES)
def test_scone_conformance(case, check):
    check(case)
