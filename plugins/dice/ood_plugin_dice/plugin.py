"""Registration of the DICE scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name DICE resolves here: names are matched case-insensitively
    register(
        name="dice",
        target="ood_plugin_dice.scorer:DICE",
        summary=(
            "Energy of a linear head whose weights with the lowest contribution (mean ID "
            "activation times weight) are masked out (fitted); needs head= (or w, b) and p."
        ),
        paper="Sun and Li, DICE: Leveraging Sparsification for Out-of-Distribution Detection, ECCV 2022",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
