"""OOD metrics per OOD set, the metrics table, the ROC curve and the score histogram.

Used by ``oodx eval`` and ``oodx demo``. Imports numpy only (matplotlib when plotting); the
metrics are ``ood_runtime.metrics.ood_metrics`` (OOD is the positive class; equal to
``ood_core.metrics.OODMetrics``), so that serving installs need no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from oodx.errors import DEMO_EXTRA, require
from oodx.table import format_table

#: the columns of the metrics table, in order
METRICS = ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR", "ACC")


def ood_metrics(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    *,
    id_labels: np.ndarray | None = None,
    id_predictions: np.ndarray | None = None,
) -> dict[str, float]:
    """AUROC, AUPR-IN, AUPR-OUT, FPR95TPR of ID vs OOD outlier scores, and ACC (over the ID
    samples) when ``id_labels`` and ``id_predictions`` are given."""
    from ood_runtime.metrics import ood_metrics as compute

    with_acc = id_labels is not None and id_predictions is not None
    return compute(
        id_scores,
        ood_scores,
        id_labels=id_labels if with_acc else None,
        id_predictions=id_predictions if with_acc else None,
    )


def metrics_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """One row per OOD set: AUROC, AUPR-IN, AUPR-OUT, FPR95TPR (and ACC when present)."""
    columns = [m for m in METRICS if any(m in r for r in results.values())]
    rows = [
        (name, *(f"{r[m]:.4f}" if m in r else "-" for m in columns)) for name, r in results.items()
    ]
    return format_table(
        ["OOD SET", *columns], rows, width=10_000, align_right=range(1, len(columns) + 1)
    )


def roc_curve(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates (OOD positive) at every distinct threshold, from (0, 0)."""
    scores = np.concatenate([ood_scores, id_scores]).astype(np.float64)
    is_ood = np.concatenate([np.ones(len(ood_scores)), np.zeros(len(id_scores))])
    order = np.argsort(-scores, kind="stable")
    scores, is_ood = scores[order], is_ood[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(is_ood)[last_of_group]
    fp = (last_of_group + 1) - tp
    tpr = np.r_[0.0, tp / max(len(ood_scores), 1)]
    fpr = np.r_[0.0, fp / max(len(id_scores), 1)]
    return fpr, tpr


def _figure(width: float = 6.0, height: float = 4.5):  # noqa: ANN202 - matplotlib Figure
    require(
        "matplotlib",
        purpose="writing plots",
        install=f"pip install matplotlib (or {DEMO_EXTRA.removeprefix('pip install ')})",
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)  # the Agg canvas: no display needed, no global backend switch
    return fig


def write_plots(
    id_scores: np.ndarray,
    ood_scores: Mapping[str, np.ndarray],
    out_dir: str | Path,
    *,
    results: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "",
    threshold: float | None = None,
) -> dict[str, Path]:
    """Write ``roc.png`` (one curve per OOD set) and ``scores.png`` (score histograms) into
    ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    id_scores = np.asarray(id_scores, dtype=np.float64).reshape(-1)

    fig = _figure()
    ax = fig.add_subplot()
    for name, scores in ood_scores.items():
        fpr, tpr = roc_curve(id_scores, np.asarray(scores, dtype=np.float64).reshape(-1))
        auroc = (results or {}).get(name, {}).get("AUROC")
        label = f"{name} (AUROC {auroc:.3f})" if auroc is not None else name
        ax.plot(fpr, tpr, label=label, linewidth=1.6)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    ax.set_xlabel("false-positive rate (ID flagged as OOD)")
    ax.set_ylabel("true-positive rate (OOD detected)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"ROC, ID vs OOD{f' - {title}' if title else ''}")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    roc_path = out / "roc.png"
    fig.savefig(roc_path)

    fig = _figure()
    ax = fig.add_subplot()
    every = np.concatenate(
        [id_scores, *(np.asarray(s, dtype=np.float64).reshape(-1) for s in ood_scores.values())]
    )
    finite = every[np.isfinite(every)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 60)
    ax.hist(np.clip(id_scores, lo, hi), bins=bins, alpha=0.6, density=True, label="ID")
    for name, scores in ood_scores.items():
        ax.hist(
            np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), lo, hi),
            bins=bins,
            alpha=0.45,
            density=True,
            histtype="stepfilled",
            label=f"OOD: {name}",
        )
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("outlier score (higher = more OOD)")
    ax.set_ylabel("density")
    ax.set_title(f"Score distribution{f' - {title}' if title else ''}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    hist_path = out / "scores.png"
    fig.savefig(hist_path)
    return {"roc": roc_path, "histogram": hist_path}
