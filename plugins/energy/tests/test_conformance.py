"""The energy loss (and its scorer from scorer()) pass the oodx conformance kit."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

DEFAULT = LossCase("energy")
CASES = [
    DEFAULT,
    LossCase("energy", {"reduction": "sum"}, id="energy-sum"),
    # margins near the energies of the kit's inputs, so both hinges are partly active
    LossCase(
        "energy", {"alpha": 0.5, "margin_in": -5.0, "margin_out": -2.0}, id="energy-near-margins"
    ),
    ScorerCase("energy", from_loss=DEFAULT, id="energy-loss.scorer()"),
]


@parametrize_with_checks(CASES)
def test_energy_conformance(case, check):
    check(case)
