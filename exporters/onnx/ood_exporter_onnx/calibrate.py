"""Stage *calibrate*: the score threshold keeping a fraction ``tpr`` of ID inputs, computed by
the exported graph itself (``ood_core.metrics.threshold_for_id_rate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ood_core.metrics import threshold_for_id_rate
from ood_exporter_onnx.convert import INPUT
from ood_exporter_onnx.errors import ExportError
from ood_exporter_onnx.verify import session


def calibration_array(calibrate: Any, x: Tensor, channel_axis: int | None = None) -> np.ndarray:
    """ID inputs (array, tensor, ``.npy``/``.npz`` path) shaped like ``x``, in ``x``'s dtype
    (``channel_axis`` given: raw images for a resizing graph, only that axis is fixed)."""
    if isinstance(calibrate, (str, os.PathLike)):
        path = Path(calibrate)
        if not path.is_file():
            raise ExportError(f"calibration file {path} does not exist")
        try:
            calibrate = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"cannot read calibration array {path}: {exc}") from None
        if hasattr(calibrate, "files"):  # .npz: its only (or first) array
            calibrate = calibrate[calibrate.files[0]]
    if isinstance(calibrate, Tensor):
        calibrate = calibrate.detach().cpu().numpy()
    arr = np.asarray(calibrate)
    expected = tuple(x.shape[1:])
    got = tuple(arr.shape[1:])
    if channel_axis is not None and arr.ndim == x.dim():
        expected, got = expected[channel_axis - 1], got[channel_axis - 1]
    if arr.ndim != x.dim() or got != expected or arr.shape[0] < 1:
        raise ExportError(
            f"calibration inputs must have shape (N, {', '.join(map(str, expected))}) like the "
            f"model's input, got {arr.shape}"
        )
    dtype = x.numpy().dtype
    if dtype == np.uint8 and (arr.dtype.kind not in "iub" or arr.min() < 0 or arr.max() > 255):
        raise ExportError(
            f"calibration inputs must be raw uint8 images (0..255) like the graph's input, got "
            f"{arr.dtype} in [{arr.min()}, {arr.max()}]"
        )
    return np.ascontiguousarray(arr.astype(dtype))


def calibrate_threshold(
    path: Path,
    calibrate: Any,
    tpr: float,
    batch_size: int,
    x: Tensor,
    channel_axis: int | None = None,
) -> tuple[float, int]:
    """``(threshold, n)``: the threshold keeping ``tpr`` of the ``n`` ID inputs' scores."""
    arr = calibration_array(calibrate, x, channel_axis)
    runner = session(path)
    scores = [
        runner.run(["score"], {INPUT: arr[i : i + batch_size]})[0]
        for i in range(0, arr.shape[0], batch_size)
    ]
    flat = np.concatenate([s.reshape(-1) for s in scores])
    if not np.all(np.isfinite(flat)):
        raise ExportError("the model gives non-finite scores on the calibration inputs")
    return float(threshold_for_id_rate(flat, float(tpr))), int(arr.shape[0])


__all__ = ["calibrate_threshold", "calibration_array"]
