"""The background-class plugin passes the oodx conformance kit.

The kit's ``num_classes`` is the number of logit columns, ``N + 1``; targets are drawn from the
``N = n_classes`` known classes (and -1), and the kit's "target >= C" corruption is above ``N``.
"""

from ood_core.testing import (
    InputSpec,
    LossCase,
    ScorerCase,
    default_inputs,
    parametrize_with_checks,
)

N = 3


def make_inputs(spec: InputSpec) -> tuple:
    (logits,) = default_inputs(spec, ("logits",))
    (target,) = default_inputs(spec.replace(num_classes=spec.num_classes - 1), ("target",))
    return logits, target


BACKGROUND = LossCase(
    "background-class", {"n_classes": N}, num_classes=N + 1, make_inputs=make_inputs
)

CASES = [
    BACKGROUND,
    LossCase(
        "background-class",
        {"n_classes": N, "reduction": "sum"},
        num_classes=N + 1,
        make_inputs=make_inputs,
        id="background-class-sum",
    ),
    ScorerCase("background-class", num_classes=N + 1),
    ScorerCase(
        "background-class", num_classes=N + 1, from_loss=BACKGROUND, id="background-class.scorer()"
    ),
]


@parametrize_with_checks(CASES)
def test_background_class_conformance(case, check):
    check(case)
