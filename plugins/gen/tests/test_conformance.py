"""The GEN scorer passes the oodx conformance kit."""

from ood_core.testing import ScorerCase, parametrize_with_checks

CASES = [
    ScorerCase("gen"),
    ScorerCase("gen", {"gamma": 0.5, "M": 2}, id="gen-top2"),
]


@parametrize_with_checks(CASES)
def test_gen_conformance(case, check):
    check(case)
