"""Registration of the SCALE scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name SCALE resolves here: names are matched case-insensitively
    register(
        name="scale",
        target="ood_plugin_scale.scorer:SCALE",
        summary=(
            "Energy of the head's logits on feature maps scaled by exp(total / top-k "
            "activation sum) per sample, nothing pruned; needs head=."
        ),
        paper=(
            "Xu, Chen, Franchi and Yao, Scaling for Training Time and Post-hoc "
            "Out-of-distribution Detection Enhancement, ICLR 2024"
        ),
        reads="feature_maps",
        needs_fit=False,
        tasks=("classification",),
        exportable=True,
    )
