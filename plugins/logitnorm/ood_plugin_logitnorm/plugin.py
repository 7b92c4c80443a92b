"""Registrations of ood-plugin-logitnorm (imports nothing but the hook marker)."""

from __future__ import annotations

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_losses(register):
    register(
        name="logitnorm",
        target="ood_plugin_logitnorm.loss:LogitNorm",
        summary="Cross-entropy on L2-normalised logits scaled by 1/t (curbs overconfidence).",
        paper=(
            "Wei et al., Mitigating Neural Network Overconfidence with Logit Normalization, "
            "ICML 2022, arXiv:2205.09310"
        ),
        tasks=("classification", "segmentation"),
        uses_ood=False,
        scorer="msp",
        inputs=("logits", "target"),
        recipe={"t": 0.04},
        aliases=("logit-norm",),
    )
