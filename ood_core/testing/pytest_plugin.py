"""pytest plugin (entry point ``pytest11: oodx``): conformance tests from ``OODX_CASES``.

A test module that defines ``OODX_CASES = [LossCase(...), ScorerCase(...)]`` and a test with the
arguments ``oodx_case`` and ``oodx_check`` gets one test per case and applicable check::

    OODX_CASES = [LossCase("my-loss")]

    def test_oodx(oodx_case, oodx_check):
        oodx_check(oodx_case)

The plugin imports nothing heavy until such a test is collected.
"""

from __future__ import annotations

from typing import Any


def pytest_generate_tests(metafunc: Any) -> None:
    if not {"oodx_case", "oodx_check"} <= set(metafunc.fixturenames):
        return
    cases = getattr(metafunc.module, "OODX_CASES", None)
    if cases is None:
        raise ValueError(
            f"{metafunc.module.__name__}: a test taking oodx_case/oodx_check needs a module-level "
            "OODX_CASES = [LossCase(...), ScorerCase(...)]"
        )
    from ood_core.testing import _check_id, iter_checks

    pairs = iter_checks(cases)
    metafunc.parametrize(
        ("oodx_case", "oodx_check"), pairs, ids=[_check_id(c, k) for c, k in pairs]
    )
