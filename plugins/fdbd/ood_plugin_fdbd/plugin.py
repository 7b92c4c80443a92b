"""Registration of the fDBD scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name fDBD resolves here: names are matched case-insensitively
    register(
        name="fdbd",
        target="ood_plugin_fdbd.scorer:fDBD",
        summary=(
            "Mean distance of the features to the linear head's decision boundaries over their distance to the training mean, negated; needs head=."
        ),
        paper="Liu and Qin, Fast Decision Boundary based Out-of-Distribution Detector, ICML 2024",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
