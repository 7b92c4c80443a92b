"""ood_core.testing.dropin: signature comparison with a reference implementation."""

import pytest

from ood_core.testing.dropin import assert_same_signature, signature_differences


class Reference:
    def __init__(self, alpha=1.0, reduction="mean"):
        pass

    def forward(self, logits, target):
        pass


class Same:
    def __init__(self, alpha: float = 1.0, reduction: str = "mean") -> None:
        pass

    def forward(self, logits, target):
        pass


class OtherDefault(Same):
    def __init__(self, alpha=2.0, reduction="mean"):
        pass


class OtherForward(Same):
    def forward(self, logits, targets):
        pass


def test_equal_signatures_ignore_annotations():
    assert signature_differences(Same, Reference) == []
    assert_same_signature(Same, Reference)


@pytest.mark.parametrize("cls, method", [(OtherDefault, "__init__"), (OtherForward, "forward")])
def test_differences_name_the_method(cls, method):
    (problem,) = signature_differences(cls, Reference)
    assert f"{cls.__qualname__}.{method}" in problem
    with pytest.raises(AssertionError, match="drop-in"):
        assert_same_signature(cls, Reference)


def test_functions_and_selected_methods():
    def f(x, t=1.0):
        pass

    def g(x, t=0.5):
        pass

    assert signature_differences(f, f) == []
    assert len(signature_differences(f, g)) == 1
    assert signature_differences(OtherForward, Reference, methods=("__init__",)) == []
    assert signature_differences(f, Reference)
