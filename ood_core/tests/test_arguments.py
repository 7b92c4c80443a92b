"""ood_core.arguments: checks of constructor keywords."""

import pytest

from ood_core.arguments import check_real


def test_check_real_accepts_numbers_and_returns_float():
    assert check_real("Owner", "alpha", 1) == 1.0 and isinstance(check_real("O", "a", 1), float)
    assert check_real("Owner", "margin", -2.5) == -2.5
    assert check_real("Owner", "radius", 0.0, minimum=0.0) == 0.0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "1", None])
def test_check_real_rejects_non_finite_and_non_numbers(value):
    with pytest.raises(ValueError, match="Owner: argument 'alpha' must be a finite real number"):
        check_real("Owner", "alpha", value)


def test_check_real_minimum():
    with pytest.raises(
        ValueError, match=r"Owner: argument 'radius' must be a real number >= 0, got -1"
    ):
        check_real("Owner", "radius", -1, minimum=0.0)
