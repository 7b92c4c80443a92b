"""Registration of the ONNX exporter (imports nothing but the hook marker)."""

from __future__ import annotations

from typing import Any

from ood_core.hookspecs import PLUGIN_API_VERSION, hookimpl

OODX_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def oodx_register_exporters(register: Any) -> None:
    register(
        name="onnx",
        target="ood_exporter_onnx.export:export",
        summary=(
            "One ONNX graph: input -> model output, OOD score (higher = more OOD) and int64 "
            "class; verified in onnxruntime before it is written."
        ),
        suffix=".onnx",
    )
