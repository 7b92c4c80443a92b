"""OOD metrics of ID and OOD outlier scores in numpy: AUROC, AUPR-IN, AUPR-OUT, FPR95TPR, ACC.

OOD is the positive class; ties form one threshold. The definitions (and the summation order,
so that results agree to the last bit) are those of ``ood_core.metrics.OODMetrics`` in exact
mode (docs/metrics.md); this module exists so that serving needs no torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_CHUNK = 1 << 16


def _scores(arg: str, raw: Any) -> np.ndarray:
    x = np.asarray(raw)
    if x.dtype.kind != "f":
        raise ValueError(f"ood_metrics: {arg} must be floating-point outlier scores, got {x.dtype}")
    x = np.sort(x.astype(np.float64).reshape(-1))
    if not x.size:
        raise ValueError(f"ood_metrics: {arg} must hold at least one score, got none")
    if np.isnan(x[-1]):  # NaN sorts last
        raise ValueError(f"ood_metrics: {arg} must be free of NaN, got {int(np.isnan(x).sum())}")
    return x


def _first_k_reaching(rate: float, n_pos: int) -> int:
    """Smallest integer ``k`` with ``k / n_pos >= rate`` in float64."""
    k = min(max(math.ceil(rate * n_pos), 1), n_pos)
    while k > 1 and (k - 1) / n_pos >= rate:
        k -= 1
    while k < n_pos and k / n_pos < rate:
        k += 1
    return k


def ood_metrics(
    id_scores: Any,
    ood_scores: Any,
    *,
    id_labels: Any = None,
    id_predictions: Any = None,
    tpr: float = 0.95,
) -> dict[str, float]:
    """AUROC, AUPR-IN, AUPR-OUT and ``FPR{100 tpr}TPR`` of ID vs OOD outlier scores, and ACC
    (over the ID samples) when ``id_labels`` and ``id_predictions`` are given.

    With ``P`` OOD and ``N`` ID scores: AUROC ``= P(s_ood > s_id) + 1/2 P(s_ood = s_id)``;
    AUPR-OUT the step-wise average precision with OOD positive, AUPR-IN with ID positive;
    FPR at the largest threshold flagging at least ``tpr`` of the OOD scores.
    """
    s_id, s_ood = _scores("id_scores", id_scores), _scores("ood_scores", ood_scores)
    n_pos, n_neg = s_ood.size, s_id.size
    auroc2 = aupr_out = aupr_in = 0.0
    for lo in range(0, n_pos, _CHUNK):
        u = s_ood[lo : lo + _CHUNK]
        id_lt = np.searchsorted(s_id, u, side="left").astype(np.float64)
        auroc2 += float(id_lt.sum()) + float(np.searchsorted(s_id, u, side="right").sum())
        tp = n_pos - np.searchsorted(s_ood, u, side="left").astype(np.float64)
        aupr_out += float((tp / (tp + (n_neg - id_lt))).sum())
    for lo in range(0, n_neg, _CHUNK):
        v = s_id[lo : lo + _CHUNK]
        id_le = np.searchsorted(s_id, v, side="right").astype(np.float64)
        aupr_in += float((id_le / (id_le + np.searchsorted(s_ood, v, side="right"))).sum())
    k = _first_k_reaching(float(tpr), n_pos)
    fp = n_neg - int(np.searchsorted(s_id, s_ood[n_pos - k], side="left"))
    out = {
        "AUROC": auroc2 / (2.0 * n_pos * n_neg),
        "AUPR-IN": aupr_in / n_neg,
        "AUPR-OUT": aupr_out / n_pos,
        f"FPR{round(100 * tpr)}TPR": fp / n_neg,
    }
    if id_labels is not None and id_predictions is not None:
        labels = np.asarray(id_labels).reshape(-1)
        preds = np.asarray(id_predictions).reshape(-1)
        if labels.shape != preds.shape or labels.size != n_neg:
            raise ValueError(
                f"ood_metrics: id_labels and id_predictions must hold one entry per ID score "
                f"({n_neg}), got {labels.size} and {preds.size}"
            )
        out["ACC"] = int(np.count_nonzero(labels == preds)) / n_neg
    return out


def threshold_for_id_rate(id_scores: Any, keep: float = 0.95) -> float:
    """The score threshold keeping a fraction ``keep`` of the ID scores: ``s_(k)`` of the sorted
    scores, ``k = ceil(keep * n)`` (as ``ood_core.metrics.threshold_for_id_rate``)."""
    s = _scores("id_scores", id_scores)
    if not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"threshold_for_id_rate: keep must be a fraction in (0, 1], got {keep!r}")
    k = min(max(math.ceil(float(keep) * s.size * (1.0 - 1e-12)), 1), s.size)
    return float(s[k - 1])


__all__ = ["ood_metrics", "threshold_for_id_rate"]
