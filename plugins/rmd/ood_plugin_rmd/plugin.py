"""Registration of the RMD scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name "RMD" resolves case-insensitively to the name itself
    register(
        name="rmd",
        target="ood_plugin_rmd.scorer:RMD",
        summary="Relative Mahalanobis distance: class distance minus background distance (fitted).",
        paper=(
            "Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan, A Simple Fix to Mahalanobis Distance "
            "for Improving Near-OOD Detection, arXiv:2106.09022, 2021"
        ),
        reads="features",
        needs_fit=True,
        tasks=("classification", "segmentation"),
    )
