"""Registration of the NCI scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name NCI resolves here: names are matched case-insensitively
    register(
        name="nci",
        target="ood_plugin_nci.scorer:NCI",
        summary=(
            "Negated alignment of the centred feature with the predicted class's weight vector, minus an optional L1 feature-norm penalty; needs head=."
        ),
        paper="Liu and Qin, Detecting Out-of-Distribution Through the Lens of Neural Collapse, CVPR 2025",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
