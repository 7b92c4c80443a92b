"""Registration of the PNML scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name PNML resolves here: names are matched case-insensitively
    register(
        name="pnml",
        target="ood_plugin_pnml.scorer:PNML",
        summary=(
            "Single-layer pNML regret of the head's softmax on L2-normalised features, with the pseudo-inverse of the fit features' Gram matrix; needs head=."
        ),
        paper="Bibas, Feder and Hassner, Single Layer Predictive Normalized Maximum Likelihood for Out-of-Distribution Detection, NeurIPS 2021",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
