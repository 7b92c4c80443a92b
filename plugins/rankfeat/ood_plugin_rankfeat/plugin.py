"""Registration of the RankFeat scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name RankFeat resolves here: names are matched case-insensitively
    register(
        name="rankfeat",
        target="ood_plugin_rankfeat.scorer:RankFeat",
        summary=(
            "Energy of the head's logits on feature maps with each sample's rank-1 component "
            "(power iteration) removed; needs head= (pooled features -> logits)."
        ),
        paper=(
            "Song, Sebe and Wang, RankFeat: Rank-1 Feature Removal for Out-of-distribution "
            "Detection, NeurIPS 2022"
        ),
        reads="feature_maps",
        needs_fit=False,
        tasks=("classification",),
        exportable=True,
    )
