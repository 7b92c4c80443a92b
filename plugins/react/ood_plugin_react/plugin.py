"""Registration of the ReAct scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name ReAct resolves here: names are matched case-insensitively
    register(
        name="react",
        target="ood_plugin_react.scorer:ReAct",
        summary=(
            "Energy of the head's logits on feature maps clipped at a percentile of the ID "
            "activations (fitted) or a given threshold; needs head= (pooled features -> logits)."
        ),
        paper=(
            "Sun, Guo and Li, ReAct: Out-of-distribution Detection With Rectified Activations, "
            "NeurIPS 2021"
        ),
        reads="feature_maps",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
