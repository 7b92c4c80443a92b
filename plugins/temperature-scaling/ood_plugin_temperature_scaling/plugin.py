"""Registration of the temperature-scaling scorer (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="temperature-scaling",
        target="ood_plugin_temperature_scaling.scorer:TemperatureScaling",
        summary=(
            "Negative maximum softmax of logits / T, with T fitted by minimising the NLL of "
            "labelled held-out data."
        ),
        paper="Guo, Pleiss, Sun, Weinberger, On Calibration of Modern Neural Networks, ICML 2017",
        reads="logits",
        needs_fit=True,
        tasks=("classification", "segmentation"),
        aliases=("temperaturescaling",),
    )
