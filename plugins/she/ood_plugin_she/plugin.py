"""Registration of the SHE scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name SHE resolves here: names are matched case-insensitively
    register(
        name="she",
        target="ood_plugin_she.scorer:SHE",
        summary=(
            "Negated inner product of the features with the stored pattern (mean correctly classified feature) of the predicted class; needs head= and labels."
        ),
        paper="Zhang et al., Out-of-Distribution Detection based on In-Distribution Data Patterns Memorization with Modern Hopfield Energy, ICLR 2023",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
