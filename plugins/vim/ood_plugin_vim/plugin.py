"""Registration of the ViM scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name ViM resolves here: names are matched case-insensitively
    register(
        name="vim",
        target="ood_plugin_vim.scorer:ViM",
        summary=(
            "Virtual logit (the features' residual beyond a principal subspace, scaled by alpha) "
            "minus the energy of the linear head's logits; needs head= (or w, b) and d."
        ),
        paper="Wang et al., ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
