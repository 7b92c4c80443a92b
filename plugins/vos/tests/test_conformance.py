"""The VOS plugin passes the oodx conformance kit."""

from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

VOS = LossCase("vos", {"num_classes": 4})
# sample_number=1: the queues are full after the first step, so sampling and the regulariser
# are active in the state-dict, compile and scorer checks; seeded runs draw the same outliers
SYNTHESIS = LossCase(
    "vos-synthesis",
    {"num_classes": 4, "num_features": 8, "sample_number": 1, "sample_from": 32, "select": 2},
    deterministic=True,
    id="vos-synthesis-active",
)

CASES = [
    VOS,
    LossCase("vos", {"num_classes": 4, "reduction": "sum", "alpha": 0.5}, id="vos-sum"),
    SYNTHESIS,
    LossCase(
        "vos-synthesis",
        {
            "num_classes": 4,
            "num_features": 8,
            "reduction": "sum",
            "sample_number": 50,
            "sample_from": 16,
        },
        id="vos-synthesis-filling",
    ),
    ScorerCase("weighted-energy", {"num_classes": 4}),
    ScorerCase("weighted-energy", from_loss=VOS, id="vos.scorer()"),
    ScorerCase("weighted-energy", from_loss=SYNTHESIS, id="vos-synthesis.scorer()"),
]


@parametrize_with_checks(CASES)
def test_vos_conformance(case, check):
    check(case)
