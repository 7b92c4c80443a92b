"""Serving an exported oodx model with onnxruntime, on a GPU (CUDA provider) or a CPU."""

from __future__ import annotations

import os
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ood_runtime.errors import (
    CPU_INSTALL,
    GPU_INSTALL,
    GPUUnavailableError,
    InputError,
    import_onnxruntime,
)
from ood_runtime.metadata import decode_metadata

OUTPUTS = ("output", "score", "prediction")


class OnnxRuntimeWarning(UserWarning):
    """onnxruntime is set up in a way that silently changes where or whether models run."""


def _installed(dist: str) -> bool:
    try:
        importlib_metadata.distribution(dist)
    except importlib_metadata.PackageNotFoundError:
        return False
    return True


def check_runtime_install() -> None:
    """Warn when both ``onnxruntime`` and ``onnxruntime-gpu`` are installed (they clash)."""
    if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
        warnings.warn(
            "both onnxruntime and onnxruntime-gpu are installed; they share the `onnxruntime` "
            "package and overwrite each other's files, which breaks the CUDA provider or the "
            "whole runtime. Keep one: `pip uninstall -y onnxruntime onnxruntime-gpu` and then "
            f"`{GPU_INSTALL}` (GPU) or `{CPU_INSTALL}` (CPU).",
            OnnxRuntimeWarning,
            stacklevel=3,
        )


def _parse_device(device: str) -> tuple[str, int]:
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"OnnxModel: device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return ("cuda" if kind == "gpu" else kind), int(index or 0)


def _providers(ort: Any, kind: str, index: int) -> tuple[list[Any], str]:
    """The providers to ask for, and why CUDA cannot be had ('' when it may)."""
    available = list(ort.get_available_providers())
    if kind != "cuda":
        return ["CPUExecutionProvider"], ""
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], ""
    return ["CPUExecutionProvider"], (
        f"this onnxruntime has no CUDA provider (available: {', '.join(available)}); "
        f"install the GPU build: `pip uninstall -y onnxruntime && {GPU_INSTALL}`"
    )


class OnnxModel:
    """An exported oodx model in an onnxruntime session.

    ``run(x)`` gives ``{"output", "score", "prediction"}`` (and ``"is_ood"`` when the graph was
    calibrated) as numpy arrays; higher score = more OOD. ``device="cuda"`` (or ``"cuda:N"``)
    asks for onnxruntime's CUDA provider; when the session ends up on the CPU anyway it warns
    with :class:`OnnxRuntimeWarning`, or raises :class:`GPUUnavailableError` with
    ``require_gpu=True``. ``metadata`` is the decoded ``oodx.*`` properties, ``threshold`` the
    calibrated score threshold (or ``None``), ``preprocess`` what raw input an image graph takes
    (or ``None`` for a float graph).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        require_gpu: bool = False,
        *,
        threads: int | None = None,
    ) -> None:
        ort = import_onnxruntime("running an exported model")
        check_runtime_install()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"OnnxModel: no such file {self.path}")
        kind, index = _parse_device(device)
        self.device = kind if kind == "cpu" else f"cuda:{index}"
        providers, reason = _providers(ort, kind, index)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3  # errors only: fallbacks are reported below, in words
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"OnnxModel: onnxruntime cannot load {self.path}: {exc}") from None
        self.providers: list[str] = list(self.session.get_providers())
        if kind == "cuda" and "CUDAExecutionProvider" not in self.providers:
            reason = reason or (
                "the CUDA provider failed to start (CUDA or cuDNN libraries missing or "
                "mismatched, or no GPU visible)"
            )
            message = f"device={device!r} was asked for but the model runs on the CPU: {reason}"
            if require_gpu:
                raise GPUUnavailableError(message)
            warnings.warn(message, OnnxRuntimeWarning, stacklevel=2)
        self._describe_session()

    def _describe_session(self) -> None:
        meta = self.session.get_modelmeta()
        self.metadata: dict[str, Any] = decode_metadata(meta.custom_metadata_map)
        self.doc_string: str = meta.description or ""
        threshold = self.metadata.get("threshold")
        self.threshold: float | None = float(threshold) if threshold not in (None, "") else None
        preprocess = self.metadata.get("preprocess")
        self.preprocess: dict[str, Any] | None = (
            preprocess if isinstance(preprocess, dict) else None
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"OnnxModel: {self.path} has {len(inputs)} inputs; an oodx model has one, 'input'"
            )
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self.input_dtype = np.dtype(_ORT_TYPES.get(inputs[0].type, np.float32))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: Any, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs for the batch ``x`` (array or tensor), in chunks of ``batch_size`` if given.

        ``x`` may also be a list of single inputs of different sizes (raw images for a graph
        that resizes): they run in one batch per size and come back in the list's order.
        """
        if isinstance(x, list):
            return self._run_ragged(x, batch_size)
        arr = _as_input(x, self.input_dtype)
        if batch_size is None or arr.shape[0] <= batch_size:
            return self._run(arr)
        parts = [self._run(arr[i : i + batch_size]) for i in range(0, arr.shape[0], batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run_ragged(self, items: list[Any], batch_size: int | None) -> dict[str, np.ndarray]:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(tuple(np.shape(item)), []).append(i)
        order = np.concatenate([np.asarray(idx) for idx in groups.values()])
        parts = [self.run(np.stack([items[i] for i in idx]), batch_size) for idx in groups.values()]
        inverse = np.argsort(order, kind="stable")
        return {k: np.concatenate([p[k] for p in parts])[inverse] for k in parts[0]}

    def _run(self, arr: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: arr})
        return dict(zip(self.output_names, values))

    def is_ood(self, score: Any) -> np.ndarray:
        """``score > threshold`` (the calibrated threshold), and ``True`` for a NaN or +-inf
        score (fail closed); raises if the model has no threshold. Equals the graph's
        ``is_ood`` output."""
        if self.threshold is None:
            raise ValueError(
                f"{self.path} carries no threshold; export it with calibration data "
                "(oodx export ... --calibrate id.npy)"
            )
        return flag_ood(score, self.threshold)

    def __repr__(self) -> str:
        return (
            f"OnnxModel({str(self.path)!r}, device={self.device!r}, providers={self.providers}, "
            f"scorer={self.metadata.get('scorer')!r}, threshold={self.threshold})"
        )


def flag_ood(score: Any, threshold: float) -> np.ndarray:
    """``score > threshold`` elementwise, with every non-finite score (NaN, +-inf) flagged OOD."""
    s = _as_array(score, np.float64) if hasattr(score, "detach") else np.asarray(score)
    with np.errstate(invalid="ignore"):
        return (s > threshold) | ~np.isfinite(s)


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _as_array(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def _as_input(x: Any, dtype: np.dtype) -> np.ndarray:
    """``x`` in the graph's input dtype; a raw-image (uint8) graph refuses anything that would
    not survive the cast (floats, values outside 0..255) instead of wrapping or truncating."""
    if dtype != np.uint8:
        return _as_array(x, dtype)
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(x))
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "iub" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
        got = f"{arr.dtype}" + (f" in [{arr.min()}, {arr.max()}]" if arr.size else "")
        raise InputError(
            f"this model takes raw images as uint8 (0..255; see its oodx.preprocess), got {got}"
        )
    return arr.astype(np.uint8)


__all__ = ["OUTPUTS", "OnnxModel", "OnnxRuntimeWarning", "check_runtime_install", "flag_ood"]
