"""Registrations of the built-in plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_BOTH = ("classification", "segmentation")


@hookimpl
def oodx_register_losses(register):
    register(
        name="cross-entropy",
        target="ood_core.builtin.losses:CrossEntropyLoss",
        summary="Softmax cross-entropy on ID samples; OOD targets (< 0) are ignored.",
        paper="",
        tasks=_BOTH,
        uses_ood=False,
        scorer="msp",
        inputs=("logits", "target"),
        aliases=("ce", "crossentropyloss"),
    )


@hookimpl
def oodx_register_scorers(register):
    register(
        name="msp",
        target="ood_core.builtin.scorers:MaxSoftmax",
        summary="Negative maximum softmax probability.",
        paper="Hendrycks & Gimpel, ICLR 2017, arXiv:1610.02136",
        reads="logits",
        needs_fit=False,
        tasks=_BOTH,
        aliases=("max-softmax", "maxsoftmax"),
    )
    register(
        name="max-logit",
        target="ood_core.builtin.scorers:MaxLogit",
        summary="Negative maximum logit.",
        paper="Hendrycks et al., ICML 2022, arXiv:1911.11132",
        reads="logits",
        needs_fit=False,
        tasks=_BOTH,
        aliases=("maxlogit",),
    )
    register(
        name="energy",
        target="ood_core.builtin.scorers:EnergyScore",
        summary="Free energy -T logsumexp(logits / T).",
        paper="Liu et al., NeurIPS 2020, arXiv:2010.03759",
        reads="logits",
        needs_fit=False,
        tasks=_BOTH,
        aliases=("energybased",),
    )
    register(
        name="entropy",
        target="ood_core.builtin.scorers:Entropy",
        summary="Shannon entropy of the softmax distribution.",
        paper="",
        reads="logits",
        needs_fit=False,
        tasks=_BOTH,
    )
