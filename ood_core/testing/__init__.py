"""Conformance kit for oodx plugins: the checks every loss and scorer must pass.

In a plugin's tests, one decorator runs every check on every case::

    from ood_core.testing import LossCase, ScorerCase, parametrize_with_checks

    @parametrize_with_checks([LossCase("my-loss", {"n_classes": 4}), ScorerCase("my-scorer")])
    def test_oodx_conformance(case, check):
        check(case)

With ood-core installed, its pytest plugin offers the same without the decorator: define
``OODX_CASES = [...]`` in a test module and a test taking ``oodx_case`` and ``oodx_check``.
Outside pytest, :func:`run_checks` runs everything and returns a report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ood_core.lazy import lazy_exports

if TYPE_CHECKING:  # the kit imports torch; keep `import ood_core.testing` (pytest11) light
    from ood_core.testing.cases import LossCase, ScorerCase

__getattr__, _dir = lazy_exports(
    __name__,
    {
        "MODES": ".cases",
        "InputSpec": ".cases",
        "LossCase": ".cases",
        "ScorerCase": ".cases",
        "default_inputs": ".cases",
        "LOSS_CHECKS": ".checks",
        "SCORER_CHECKS": ".checks",
        "NotApplicable": ".checks",
        "checks_for": ".checks",
        "run_check": ".checks",
    },
)


def __dir__() -> list[str]:
    return sorted(set(_dir()) | set(globals()))


Case = Any  # LossCase | ScorerCase


def _check_id(case: Case, check: Callable[..., Any]) -> str:
    from ood_core.testing.cases import LossCase

    kind = "loss" if isinstance(case, LossCase) else "scorer"
    short = check.__name__.replace(f"check_{kind}_", "")
    return f"{kind}:{case}:{short}"


def iter_checks(cases: Iterable[Case]) -> list[tuple[Case, Callable[[Case], None]]]:
    """``(case, check)`` pairs for every case and every check that applies to it."""
    from ood_core.testing.checks import NotApplicable, checks_for, run_check

    pairs: list[tuple[Case, Callable[[Case], None]]] = []
    for case in cases:
        for check in checks_for(case):

            def bound(c: Case, _check: Callable[[Any], None] = check) -> None:
                try:
                    run_check(_check, c)
                except NotApplicable as exc:
                    import pytest

                    pytest.skip(str(exc))

            bound.__name__ = check.__name__
            bound.__doc__ = check.__doc__
            pairs.append((case, bound))
    return pairs


def parametrize_with_checks(cases: Iterable[Case]) -> Any:
    """A ``pytest.mark.parametrize`` over ``(case, check)`` for every case and applicable check."""
    import pytest

    pairs = iter_checks(cases)
    return pytest.mark.parametrize(
        "case, check", pairs, ids=[_check_id(case, check) for case, check in pairs]
    )


def run_checks(cases: Iterable[Case]) -> dict[str, str]:
    """Run every check outside pytest: ``{check id: "passed" or "skipped: …" or "failed: …"}``."""
    from ood_core.testing.checks import NotApplicable, checks_for, run_check

    report: dict[str, str] = {}
    for case in cases:
        for check in checks_for(case):
            key = _check_id(case, check)
            try:
                run_check(check, case)
            except NotApplicable as exc:
                report[key] = f"skipped: {exc}"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                report[key] = f"failed: {type(exc).__name__}: {exc}"
            else:
                report[key] = "passed"
    return report


__all__ = [
    "LOSS_CHECKS",
    "MODES",
    "SCORER_CHECKS",
    "InputSpec",
    "LossCase",
    "NotApplicable",
    "ScorerCase",
    "default_inputs",
    "iter_checks",
    "parametrize_with_checks",
    "run_checks",
]
