"""Registrations of ood-plugin-entropic (imports nothing but the hook marker)."""

from __future__ import annotations

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = "Dhamija et al., Reducing Network Agnostophobia, NeurIPS 2018, arXiv:1811.04110"
_BOTH = ("classification", "segmentation")


@hookimpl
def oodx_register_losses(register):
    register(
        name="entropic-open-set",
        target="ood_plugin_entropic.loss:EntropicOpenSetLoss",
        summary="Cross-entropy on ID samples, uniform softmax (maximum entropy) on outliers.",
        paper=_PAPER,
        tasks=_BOTH,
        uses_ood=True,
        scorer="msp",
        inputs=("logits", "target"),
        aliases=("entropic", "entropicopensetloss"),
    )
    register(
        name="objectosphere",
        target="ood_plugin_entropic.loss:ObjectosphereLoss",
        summary="Entropic open-set loss plus deep-feature magnitude >= xi on ID, -> 0 on outliers.",
        paper=_PAPER,
        tasks=_BOTH,
        uses_ood=True,
        scorer="objectosphere",
        inputs=("logits", "features", "target"),
        aliases=("objectosphereloss",),
    )


@hookimpl
def oodx_register_scorers(register):
    register(
        name="objectosphere",
        target="ood_plugin_entropic.scorer:ObjectosphereScorer",
        summary="Negative L2 norm of the deep features (small magnitude = OOD).",
        paper=_PAPER,
        reads="features",
        needs_fit=False,
        tasks=_BOTH,
    )
