"""Serving an exported oodx model with onnxruntime, on a GPU (CUDA provider) or a CPU."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ood_exporter_onnx.errors import GPU_INSTALL, GPUUnavailableError, import_onnxruntime

PREFIX = "oodx."
OUTPUTS = ("output", "score", "prediction")
_JSON_KEYS = {
    "classes",
    "input_shape",
    "plugins",
    "loss_kwargs",
    "scorer_kwargs",
    "verification",
    "output_shape",
}


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
            f"`{GPU_INSTALL}` (GPU) or `pip install ood-exporter-onnx[cpu]` (CPU).",
            OnnxRuntimeWarning,
            stacklevel=3,
        )


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """``oodx.*`` metadata properties without the prefix, JSON values decoded."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if name in _JSON_KEYS:
            try:
                out[name] = json.loads(value)
            except json.JSONDecodeError:
                out[name] = value
        elif name in ("threshold", "threshold_tpr"):
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = value
        else:
            out[name] = value
    return out


def read_onnx(path: str | os.PathLike[str]) -> Any:
    """The ``onnx.ModelProto`` in ``path`` (external data not loaded); ``ValueError`` when the
    file is not an ONNX model (protobuf reads an empty file as an empty, valid message)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors
        raise ValueError(f"{path} is not a readable ONNX file: {exc}") from None
    if not model.ir_version or not model.HasField("graph") or not model.opset_import:
        raise ValueError(
            f"{path} is not a readable ONNX file (no IR version, graph or opset: empty or not ONNX)"
        )
    return model


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded ``oodx.*`` metadata of an ONNX file (reads the graph with onnx, no runtime)."""
    model = read_onnx(path)
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def _parse_device(device: str) -> tuple[str, int]:
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"OnnxModel: device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return ("cuda" if kind == "gpu" else kind), int(index or 0)


class OnnxModel:
    """An exported oodx model in an onnxruntime session.

    ``run(x)`` gives ``{"output", "score", "prediction"}`` as numpy arrays (higher score = more
    OOD). ``device="cuda"`` (or ``"cuda:N"``) asks for onnxruntime's CUDA provider; when the
    session ends up on the CPU anyway (a CPU-only onnxruntime, missing CUDA libraries), it warns
    with :class:`OnnxRuntimeWarning`, or raises :class:`GPUUnavailableError` with
    ``require_gpu=True``. ``providers`` are the session's active providers, ``metadata`` the
    decoded ``oodx.*`` properties, ``threshold`` the calibrated score threshold (or ``None``).
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
        available = list(ort.get_available_providers())
        providers: list[Any] = []
        reason = ""
        if kind == "cuda":
            if "CUDAExecutionProvider" in available:
                providers.append(("CUDAExecutionProvider", {"device_id": index}))
            else:
                reason = (
                    f"this onnxruntime has no CUDA provider (available: {', '.join(available)}); "
                    f"install the GPU build: `pip uninstall -y onnxruntime && {GPU_INSTALL}`"
                )
        providers.append("CPUExecutionProvider")
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
            if not reason:
                reason = (
                    "the CUDA provider failed to start (CUDA or cuDNN libraries missing or "
                    "mismatched, or no GPU visible)"
                )
            message = f"device={device!r} was asked for but the model runs on the CPU: {reason}"
            if require_gpu:
                raise GPUUnavailableError(message)
            warnings.warn(message, OnnxRuntimeWarning, stacklevel=2)
        self.metadata: dict[str, Any] = decode_metadata(
            self.session.get_modelmeta().custom_metadata_map
        )
        threshold = self.metadata.get("threshold")
        self.threshold: float | None = float(threshold) if threshold not in (None, "") else None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"OnnxModel: {self.path} has {len(inputs)} inputs; an oodx model has one, 'input'"
            )
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self._input_dtype = _ORT_TYPES.get(inputs[0].type, np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: Any, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs for the batch ``x`` (array or tensor), in chunks of ``batch_size`` if given."""
        arr = _as_array(x, self._input_dtype)
        if batch_size is None or arr.shape[0] <= batch_size:
            return self._run(arr)
        parts = [self._run(arr[i : i + batch_size]) for i in range(0, arr.shape[0], batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run(self, arr: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: arr})
        return dict(zip(self.output_names, values))

    def is_ood(self, score: Any) -> np.ndarray:
        """``score > threshold`` (the calibrated threshold), and ``True`` for a NaN or +-inf
        score (fail closed); raises if the model has no threshold."""
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


__all__ = [
    "OnnxModel",
    "OnnxRuntimeWarning",
    "check_runtime_install",
    "flag_ood",
    "read_metadata",
    "read_onnx",
]
