"""Registration of the KL-matching scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="kl-matching",
        target="ood_plugin_kl_matching.scorer:KLMatching",
        summary=(
            "KL divergence of the softmax posterior to the closest class-typical posterior "
            "(mean softmax of the fit samples predicted as that class)."
        ),
        paper=(
            "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, "
            "ICML 2022"
        ),
        reads="logits",
        needs_fit=True,
        tasks=("classification", "segmentation"),
        aliases=("klmatching",),
    )
