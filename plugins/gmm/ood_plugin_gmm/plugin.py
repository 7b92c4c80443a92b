"""Registration of the GMM scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name "GMM" resolves case-insensitively to the name itself
    register(
        name="gmm",
        target="ood_plugin_gmm.scorer:GMM",
        summary="Negative log-likelihood under class-conditional Gaussians (per-class covariance).",
        paper=(
            "Lee, Lee, Lee, Shin, A Simple Unified Framework for Detecting Out-of-Distribution "
            "Samples and Adversarial Attacks, NeurIPS 2018 (class-conditional Gaussians)"
        ),
        reads="features",
        needs_fit=True,
        tasks=("classification", "segmentation"),
    )
