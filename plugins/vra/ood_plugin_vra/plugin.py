"""Registration of the VRA scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name VRA resolves here: names are matched case-insensitively
    register(
        name="vra",
        target="ood_plugin_vra.scorer:VRA",
        summary=(
            "Energy of the head's logits on feature maps rectified between per-unit quantiles "
            "of the ID activations (fitted); needs head= (pooled features -> logits)."
        ),
        paper=(
            "Xu, Lian, Liu and Tao, VRA: Variational Rectified Activation for "
            "Out-of-distribution Detection, NeurIPS 2023"
        ),
        reads="feature_maps",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
