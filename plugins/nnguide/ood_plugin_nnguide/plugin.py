"""Registration of the NNGuide scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name NNGuide resolves here: names are matched case-insensitively
    register(
        name="nnguide",
        target="ood_plugin_nnguide.scorer:NNGuide",
        summary=(
            "Energy of the head's logits guided by the mean top-k similarity to an energy-scaled "
            "bank of normalised ID features; needs head=."
        ),
        paper="Park et al., Nearest Neighbor Guidance for Out-of-Distribution Detection, ICCV 2023",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
