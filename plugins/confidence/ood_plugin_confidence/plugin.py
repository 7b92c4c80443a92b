"""Registrations of ood-plugin-confidence (imports nothing but the hook marker)."""

from __future__ import annotations

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = (
    "DeVries & Taylor, Learning Confidence for Out-of-Distribution Detection in Neural "
    "Networks, arXiv:1802.04865, 2018"
)


@hookimpl
def oodx_register_losses(register):
    register(
        name="confidence",
        target="ood_plugin_confidence.loss:ConfidenceLoss",
        summary="NLL of the confidence-interpolated softmax plus -alpha log(confidence).",
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=False,
        scorer="confidence",
        inputs=("logits", "confidence", "target"),
        recipe={"demo": {"lr": 0.005}},
        aliases=("confidenceloss",),
    )


@hookimpl
def oodx_register_scorers(register):
    register(
        name="confidence",
        target="ood_plugin_confidence.scorer:ConfidenceScorer",
        summary="1 - sigmoid(confidence logit), read from the last column of the logits.",
        paper=_PAPER,
        reads="logits",
        needs_fit=False,
        tasks=("classification",),
    )
