"""Registration of the LTS scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name LTS resolves here: names are matched case-insensitively
    register(
        name="lts",
        target="ood_plugin_lts.scorer:LTS",
        summary=(
            "Energy of the head's logits scaled by (total / top-p share of the positive "
            "features)^2 per sample; needs head=."
        ),
        paper=(
            "Djurisic, Liu and Nikolic, Logit Scaling for Out-of-Distribution Detection, "
            "Machine Vision and Applications 2025"
        ),
        reads="features",
        needs_fit=False,
        tasks=("classification",),
        exportable=True,
    )
