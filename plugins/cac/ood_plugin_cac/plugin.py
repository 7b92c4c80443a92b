"""Registrations of the CAC plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = (
    "Miller et al., Class Anchor Clustering: a Loss for Distance-based Open Set Recognition, "
    "WACV 2021, arXiv:2004.02434"
)


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="cac",
        target="ood_plugin_cac.loss:CACLoss",
        summary=(
            "Anchor and tuplet loss on Euclidean distances to fixed class anchors "
            "(distances = loss.distance(embedding)); OOD targets are ignored."
        ),
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=False,
        scorer="cac",
        inputs=("distances", "target"),
        recipe={"demo": {"embedding_dim": "classes"}},
        aliases=("cacloss",),
    )


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="cac",
        target="ood_plugin_cac.scorer:CACScorer",
        summary="CAC rejection score min_k d_k (1 - softmin(d)_k) on distances to the anchors.",
        paper=_PAPER,
        reads="embedding",
        needs_fit=False,
        tasks=("classification",),
        needs_loss_state=True,
    )
