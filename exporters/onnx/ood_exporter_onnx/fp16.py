"""Stage *fp16*: how far the float16 graph's scores and classes are from the float32 graph's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from torch import Tensor

from ood_exporter_onnx.convert import INPUT
from ood_exporter_onnx.verify import inputs_like, session


def fp16_deviation(
    fp32_proto: onnx.ModelProto, fp16_path: Path, x: Tensor, batch_sizes: Sequence[int]
) -> dict[str, float]:
    """Score deviation of the fp16 file from the fp32 graph on ``max(64, *batch_sizes)`` inputs.

    ``max_abs``, ``max_rel`` (over ``max(|fp32|, 1e-6)``), ``max_abs_over_range`` (over the
    fp32 score range), ``prediction_agreement`` (fraction of equal classes) and ``samples``.
    """
    s32 = session(fp32_proto.SerializeToString())
    s16 = session(fp16_path)
    batch = max(64, *batch_sizes)
    sample = inputs_like(x, batch, seed=7).numpy()
    a_score, a_pred = s32.run(["score", "prediction"], {INPUT: sample})
    b_score, b_pred = s16.run(["score", "prediction"], {INPUT: sample})
    err = np.abs(a_score.astype(np.float64) - b_score.astype(np.float64))
    spread = float(np.ptp(a_score)) or 1.0
    return {
        "max_abs": float(err.max()),
        "max_rel": float((err / np.maximum(np.abs(a_score), 1e-6)).max()),
        "max_abs_over_range": float(err.max() / spread),
        "prediction_agreement": float((a_pred == b_pred).mean()),
        "samples": batch,
    }


__all__ = ["fp16_deviation"]
