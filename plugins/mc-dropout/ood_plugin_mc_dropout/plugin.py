"""Registration of the Monte-Carlo dropout plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="mc-dropout",
        target="ood_plugin_mc_dropout.scorer:MCD",
        summary="Softmax over N stochastic passes with dropout on: mean-class variance or "
        "negated max mean probability (runs the model; not exportable).",
        paper="Gal, Ghahramani, Dropout as a Bayesian Approximation: Representing Model "
        "Uncertainty in Deep Learning, ICML 2016",
        reads="inputs",
        needs_fit=False,
        tasks=("classification", "segmentation"),
        aliases=("mcd",),
        exportable=False,
    )
