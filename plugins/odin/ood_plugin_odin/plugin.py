"""Registration of the ODIN plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="odin",
        target="ood_plugin_odin.scorer:ODIN",
        summary="Negated max softmax at temperature T of the input perturbed against the "
        "input gradient (runs the model; not exportable).",
        paper="Liang, Li, Srikant, Enhancing The Reliability of Out-of-distribution Image "
        "Detection in Neural Networks, ICLR 2018",
        reads="inputs",
        needs_fit=False,
        tasks=("classification",),
        exportable=False,
    )
