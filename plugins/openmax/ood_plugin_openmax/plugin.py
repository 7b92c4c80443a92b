"""Registration of the OpenMax scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="openmax",
        target="ood_plugin_openmax.scorer:OpenMax",
        summary=(
            "Probability of the unknown class after revising the top-alpha logits with per-class "
            "Weibull models of the distance to the mean activation vector."
        ),
        paper="Bendale & Boult, Towards Open Set Deep Networks, CVPR 2016",
        reads="logits",
        needs_fit=True,
        tasks=("classification",),
    )
