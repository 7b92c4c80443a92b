"""Registrations of the Mahalanobis plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
# pytorch-ood 0.4.0's class names resolve case-insensitively: "Mahalanobis" is the name itself
_PAPER = (
    "Lee, Lee, Lee, Shin, A Simple Unified Framework for Detecting Out-of-Distribution Samples "
    "and Adversarial Attacks, NeurIPS 2018"
)


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="mahalanobis",
        target="ood_plugin_mahalanobis.scorer:Mahalanobis",
        summary="Squared Mahalanobis distance to the closest class mean (tied covariance; fitted).",
        paper=_PAPER,
        reads="features",
        needs_fit=True,
        tasks=("classification", "segmentation"),
    )
    register(
        name="multi-mahalanobis",
        target="ood_plugin_mahalanobis.scorer:MultiMahalanobis",
        summary="Weighted sum over layers of the Mahalanobis score on pooled layer features.",
        paper=_PAPER,
        reads="features",
        needs_fit=True,
        tasks=("classification", "segmentation"),
        aliases=("multimahalanobis",),
    )
