"""Registrations of the center-loss plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = (
    "Wen et al., A Discriminative Feature Learning Approach for Deep Face Recognition, ECCV 2016"
)


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="center",
        target="ood_plugin_center.loss:CenterLoss",
        summary=(
            "Pulls embeddings into a sphere of radius r around their class centre "
            "(distmat = loss.distance(embedding)); OOD targets are ignored."
        ),
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=False,
        scorer="center",
        inputs=("distances", "target"),
        aliases=("centerloss",),
    )


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="center",
        target="ood_plugin_center.scorer:CenterScorer",
        summary="Squared distance to the closest center-loss class centre.",
        paper=_PAPER,
        reads="embedding",
        needs_fit=False,
        tasks=("classification",),
        needs_loss_state=True,
    )
