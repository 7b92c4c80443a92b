"""Registration of the ASH scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name ASH resolves here: names are matched case-insensitively
    register(
        name="ash",
        target="ood_plugin_ash.scorer:ASH",
        summary=(
            "Energy of the head's logits on feature maps whose lowest activations per sample are "
            "pruned (ash-p), the rest binarised (ash-b) or rescaled (ash-s); needs head=."
        ),
        paper=(
            "Djurisic, Bozanic, Ashok and Liu, Extremely Simple Activation Shaping for "
            "Out-of-Distribution Detection, ICLR 2023"
        ),
        reads="feature_maps",
        needs_fit=False,
        tasks=("classification",),
        exportable=True,
    )
