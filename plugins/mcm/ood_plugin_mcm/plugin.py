"""Registration of the MCM scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="mcm",
        target="ood_plugin_mcm.scorer:MCM",
        summary=(
            "Negative maximum softmax of cosine similarities between image features and class "
            "text embeddings (CLIP-style zero-shot)."
        ),
        paper=(
            "Ming et al., Delving into Out-of-Distribution Detection with Vision-Language "
            "Representations, NeurIPS 2022"
        ),
        reads="features",
        needs_fit=False,
        tasks=("classification",),
    )
