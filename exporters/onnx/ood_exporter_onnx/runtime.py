"""Serving lives in ``ood_runtime`` (no torch); this module re-exports it for the exporter's
users and adds :func:`read_onnx` (the graph as an ``onnx.ModelProto``)."""

from __future__ import annotations

import os
from typing import Any

from ood_runtime.metadata import PREFIX, decode_metadata, read_metadata
from ood_runtime.model import (
    OUTPUTS,
    OnnxModel,
    OnnxRuntimeWarning,
    check_runtime_install,
    flag_ood,
)


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


__all__ = [
    "OUTPUTS",
    "PREFIX",
    "OnnxModel",
    "OnnxRuntimeWarning",
    "check_runtime_install",
    "decode_metadata",
    "flag_ood",
    "read_metadata",
    "read_onnx",
]
