"""Registration of the Gram scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name Gram resolves here: names are matched case-insensitively
    register(
        name="gram",
        target="ood_plugin_gram.scorer:Gram",
        summary=(
            "Deviation of higher-order Gram-matrix features of several layers' feature maps "
            "from per-class min/max bounds (fitted); the class from head= on the last layer."
        ),
        paper=(
            "Sastry and Oore, Detecting Out-of-Distribution Examples with Gram Matrices, ICML 2020"
        ),
        reads="feature_maps",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
