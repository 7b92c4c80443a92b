"""Registration of the GradUncertainty plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="grad-uncertainty",
        target="ood_plugin_grad_uncertainty.scorer:GradUncertainty",
        summary="Squared L2 norm of per-sample gradients of BCE(softmax, all-ones label) w.r.t. the selected weights, negated (runs the model; not exportable).",
        paper="Lee, AlRegib, Gradients as a Measure of Uncertainty in Neural Networks, ICIP 2020",
        reads="inputs",
        needs_fit=False,
        tasks=("classification",),
        aliases=("graduncertainty",),
        exportable=False,
    )
