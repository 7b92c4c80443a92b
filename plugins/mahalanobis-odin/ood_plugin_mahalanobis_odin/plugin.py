"""Registration of the Mahalanobis-ODIN plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="mahalanobis-odin",
        target="ood_plugin_mahalanobis_odin.scorer:MahalanobisODIN",
        summary="Mahalanobis score of the input moved one signed gradient step towards the "
        "closest class mean (fitted on features; runs the model; not exportable).",
        paper="Lee, Lee, Lee, Shin, A Simple Unified Framework for Detecting Out-of-Distribution "
        "Samples and Adversarial Attacks, NeurIPS 2018",
        reads="inputs",
        needs_fit=True,
        tasks=("classification",),
        aliases=("mahalanobisodin",),
        exportable=False,
    )
