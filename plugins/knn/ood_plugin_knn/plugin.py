"""Registration of the KNN scorer plugin (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_scorers(register: Any) -> None:
    # pytorch-ood 0.4.0's class name KNN resolves here: names are matched case-insensitively
    register(
        name="knn",
        target="ood_plugin_knn.scorer:KNN",
        summary=(
            "Distance to the k-th nearest L2-normalised feature of the fit data (a bank of at "
            "most max_bank rows, exported with the graph)."
        ),
        paper="Sun et al., Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022",
        reads="features",
        needs_fit=True,
        tasks=("classification",),
        exportable=True,
    )
