"""Registration of the NAC-UE plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="nacue",
        target="ood_plugin_nacue.scorer:NACUE",
        summary="Negated neuron activation coverage: how often ID data filled the histogram "
        "bins of the sample's neuron states sigmoid(alpha z dKL/dz) in hooked layers (fitted; "
        "runs the model; not exportable).",
        paper="Liu, Lou, Li, Chen, Zhao, Neuron Activation Coverage: Rethinking "
        "Out-of-distribution Detection and Generalization, ICLR 2024",
        reads="inputs",
        needs_fit=True,
        tasks=("classification",),
        exportable=False,
    )
