"""Registration of the GradNorm plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="gradnorm",
        target="ood_plugin_gradnorm.scorer:GradNorm",
        summary="L1 norm of per-sample gradients of KL(uniform, softmax(logits / T)) w.r.t. "
        "the selected weights, negated (runs the model; not exportable).",
        paper="Huang, Geng, Li, On the Importance of Gradients for Detecting Distributional "
        "Shifts in the Wild, NeurIPS 2021",
        reads="inputs",
        needs_fit=False,
        tasks=("classification",),
        exportable=False,
    )
