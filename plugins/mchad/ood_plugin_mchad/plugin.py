"""Registrations of the MCHAD plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = "Kirchheim et al., Multi-Class Hypersphere Anomaly Detection, ICPR 2022"


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="mchad",
        target="ood_plugin_mchad.loss:MCHADLoss",
        summary=(
            "Multi-class hypersphere loss on squared distances to learned class centres "
            "(distmat = loss.distance(embedding)); outliers are pushed beyond radius + margin."
        ),
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=True,
        scorer="mchad",
        inputs=("distances", "target"),
        recipe={"radius": 0.5, "margin": 2.0},
        aliases=("mchadloss",),
    )


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="mchad",
        target="ood_plugin_mchad.scorer:MCHADScorer",
        summary="Squared distance to the closest MCHAD class centre; predicts the closest class.",
        paper=_PAPER,
        reads="embedding",
        needs_fit=False,
        tasks=("classification",),
        needs_loss_state=True,
    )
