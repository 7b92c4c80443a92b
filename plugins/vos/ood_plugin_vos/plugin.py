"""Registrations of the VOS plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION
_PAPER = "Du et al., VOS: Learning What You Don't Know by Virtual Outlier Synthesis, ICLR 2022, arXiv:2202.01197"


@hookimpl
def oodx_register_losses(register):
    register(
        name="vos",
        target="ood_plugin_vos.loss:VOSRegLoss",
        summary="Cross-entropy plus VOS's logistic energy regulariser separating ID from (real) outliers.",
        paper=_PAPER,
        tasks=("classification", "segmentation"),
        uses_ood=True,
        scorer="weighted-energy",
        inputs=("logits", "target"),
        aliases=("vosregloss",),
    )
    register(
        name="vos-synthesis",
        target="ood_plugin_vos.loss:VirtualOutlierSynthesizingRegLoss",
        summary="VOS with virtual outliers sampled from class-conditional Gaussians of feature queues.",
        paper=_PAPER,
        tasks=("classification",),
        uses_ood=False,
        scorer="weighted-energy",
        inputs=("logits", "features", "target"),
        recipe={
            "alpha": 1.0,
            "sample_number": 200,
            "sample_from": 2000,
            "select": 1,
            "demo": {"head": "fc"},
        },
        aliases=("virtualoutliersynthesizingregloss",),
    )


@hookimpl
def oodx_register_scorers(register):
    register(
        name="weighted-energy",
        target="ood_plugin_vos.scorer:WeightedEnergyScore",
        summary="Weighted energy -log sum_c relu(w_c) exp(f_c) with class weights learned by VOS.",
        paper=_PAPER,
        reads="logits",
        needs_fit=False,
        tasks=("classification", "segmentation"),
        needs_loss_state=True,
        aliases=("weightedebo",),
    )
