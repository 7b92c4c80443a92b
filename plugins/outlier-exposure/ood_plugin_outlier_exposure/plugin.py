"""Registrations of the Outlier Exposure plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="outlier-exposure",
        target="ood_plugin_outlier_exposure.loss:OutlierExposureLoss",
        summary=(
            "Cross-entropy on ID samples plus alpha times the cross-entropy from the softmax to "
            "the uniform distribution on outliers (target < 0), each averaged over its own part."
        ),
        paper=(
            "Hendrycks, Mazeika, Dietterich, Deep Anomaly Detection with Outlier Exposure, "
            "ICLR 2019, arXiv:1812.04606"
        ),
        tasks=("classification", "segmentation"),
        uses_ood=True,
        scorer="msp",
        inputs=("logits", "target"),
        aliases=("oe", "outlierexposureloss"),
    )
