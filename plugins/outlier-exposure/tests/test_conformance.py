"""OutlierExposureLoss passes the oodx conformance kit."""

from __future__ import annotations

from ood_core.testing import LossCase, parametrize_with_checks

CASES = [
    LossCase("outlier-exposure"),
    LossCase("oe", {"alpha": 1.0, "batch_mean": True}, id="oe-batch-mean"),
    LossCase("outlier-exposure", {"alpha": 0.1, "reduction": "sum"}, id="oe-sum"),
]


@parametrize_with_checks(CASES)
def test_outlier_exposure_conformance(case, check):
    check(case)
