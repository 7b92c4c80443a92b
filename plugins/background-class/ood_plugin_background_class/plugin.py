"""Registrations of ood-plugin-background-class (imports nothing but the hook marker)."""

from __future__ import annotations

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = (
    "Background-class baseline as evaluated by Dhamija et al., Reducing Network Agnostophobia, "
    "NeurIPS 2018, arXiv:1811.04110"
)
_BOTH = ("classification", "segmentation")


@hookimpl
def oodx_register_losses(register):
    register(
        name="background-class",
        target="ood_plugin_background_class.loss:BackgroundClassLoss",
        summary="Cross-entropy over N + 1 classes; outliers are trained as the last class.",
        paper=_PAPER,
        tasks=_BOTH,
        uses_ood=True,
        scorer="background-class",
        inputs=("logits", "target"),
        recipe={"demo": {"extra_logits": 1}},
        aliases=("background", "backgroundclassloss"),
    )


@hookimpl
def oodx_register_scorers(register):
    register(
        name="background-class",
        target="ood_plugin_background_class.scorer:BackgroundClassScorer",
        summary="Softmax probability of the background (last) class.",
        paper=_PAPER,
        reads="logits",
        needs_fit=False,
        tasks=_BOTH,
    )
