"""Registrations of the SCONE plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = (
    "Bai et al., Feed Two Birds with One Scone: Exploiting Wild Data for Both "
    "Out-of-Distribution Generalization and Detection, ICML 2023, arXiv:2306.09158"
)


@hookimpl
def oodx_register_losses(register: Any) -> None:
    register(
        name="scone",
        target="ood_plugin_scone.loss:EnergyMarginLoss",
        summary=(
            "Augmented Lagrangian of SCONE: flag wild/outlier samples (target < 0) by a logistic "
            "head on the energy with a margin eta, subject to a false-alarm rate on ID samples "
            "and a bound on the ID cross-entropy; call update_hyperparameters() once per epoch."
        ),
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=True,
        scorer="scone",
        inputs=("logits", "target"),
        recipe={
            "demo": {
                "warmup_steps": 150,
                "warmup_ce_keyword": "full_train_loss",
                "epoch_method": "update_hyperparameters",
                "epoch_steps": 25,
            }
        },
        aliases=("energy-margin", "energymarginloss"),
    )


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    register(
        name="scone",
        target="ood_plugin_scone.scorer:SconeScorer",
        summary=(
            "Logit of the SCONE logistic head on the energy, phi(logsumexp(logits)); "
            "the untrained default (phi(e) = -e) is the energy score."
        ),
        paper=_PAPER,
        reads="logits",
        needs_fit=False,
        tasks=("classification",),
        needs_loss_state=True,
    )
