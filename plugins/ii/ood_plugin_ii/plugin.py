"""Registrations of the II-loss plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = (
    "Hassen & Chan, Learning a Neural-network-based Representation for Open Set Recognition, "
    "SDM 2020, arXiv:1802.04365"
)


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="ii",
        target="ood_plugin_ii.loss:IILoss",
        summary=(
            "Intra-class spread minus inter-class separation of the class means; keeps running "
            "class means for scoring. OOD targets are ignored."
        ),
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=False,
        scorer="ii",
        inputs=("embedding", "target"),
        recipe={"alpha": 3.0, "demo": {"embedding_norm": "batch", "fit_centers": True}},
        aliases=("iiloss",),
    )


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="ii",
        target="ood_plugin_ii.scorer:IIScorer",
        summary="Squared distance to the closest running class mean of the II loss.",
        paper=_PAPER,
        reads="embedding",
        needs_fit=False,
        tasks=("classification",),
        needs_loss_state=True,
    )
