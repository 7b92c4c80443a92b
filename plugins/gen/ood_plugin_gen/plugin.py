"""Registration of the GEN scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="gen",
        target="ood_plugin_gen.scorer:GEN",
        summary="Generalized entropy sum_j p_j^g (1 - p_j)^g of the M largest softmax probabilities.",
        paper=(
            "Liu, Lochman, Zach, GEN: Pushing the Limits of Softmax-Based Out-of-Distribution "
            "Detection, CVPR 2023"
        ),
        reads="logits",
        needs_fit=False,
        tasks=("classification", "segmentation"),
    )
