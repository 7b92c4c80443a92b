"""Registrations of the energy plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="energy",
        target="ood_plugin_energy.loss:EnergyRegularizedLoss",
        summary=(
            "Cross-entropy plus squared hinges that keep the free energy of ID samples below "
            "m_in and of outliers above m_out."
        ),
        paper="Liu et al., Energy-based Out-of-distribution Detection, NeurIPS 2020",
        tasks=("classification", "segmentation"),
        uses_ood=True,
        scorer="energy",  # the built-in scorer of ood-core
        inputs=("logits", "target"),
        recipe={"margin_in": -9.0, "margin_out": -4.0, "demo": {"warmup_steps": 100}},
        aliases=("energyregularizedloss",),
    )
