"""Registrations of the Deep SVDD plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_SVDD = "Ruff et al., Deep One-Class Classification, ICML 2018"
_SAD = "Ruff et al., Deep Semi-Supervised Anomaly Detection, ICLR 2020, arXiv:1906.02694"


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="deep-svdd",
        target="ood_plugin_deep_svdd.loss:DeepSVDDLoss",
        summary="Pulls ID embeddings into a hypersphere around one fixed centre (targets optional).",
        paper=_SVDD,
        tasks=("classification",),
        uses_ood=False,
        scorer="deep-svdd",
        inputs=("embedding", "target"),
        aliases=("deepsvddloss",),
    )
    register(
        name="deep-sad",
        target="ood_plugin_deep_svdd.loss:DeepSADLoss",
        summary="Deep SVDD that also pushes labelled outliers (target < 0) away from the centre.",
        paper=_SAD,
        tasks=("classification",),
        uses_ood=True,
        scorer="deep-svdd",
        inputs=("embedding", "target"),
        aliases=("deepsadloss",),
    )


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="deep-svdd",
        target="ood_plugin_deep_svdd.scorer:DeepSVDDScorer",
        summary="Squared distance of the embedding to the Deep SVDD centre, minus the squared radius.",
        paper=_SVDD,
        reads="embedding",
        needs_fit=False,
        tasks=("classification",),
        needs_loss_state=True,
    )
