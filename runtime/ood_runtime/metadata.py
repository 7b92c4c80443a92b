"""The ``oodx.*`` metadata properties of an exported graph, decoded (see docs/export.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ood_runtime.onnxfile import describe_onnx

PREFIX = "oodx."
#: properties holding JSON (decoded); everything else is text but the two floats below
JSON_KEYS = frozenset(
    {
        "classes",
        "input_shape",
        "plugins",
        "loss_kwargs",
        "scorer_kwargs",
        "verification",
        "output_shape",
        "preprocess",
        "extra",
    }
)
FLOAT_KEYS = frozenset({"threshold", "threshold_tpr"})


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """``oodx.*`` metadata properties without the prefix, JSON values and floats decoded
    (a value that does not decode is kept as its text)."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        out[name] = value
        try:
            if name in JSON_KEYS:
                out[name] = json.loads(value)
            elif name in FLOAT_KEYS:
                out[name] = float(value)
        except ValueError:  # JSONDecodeError is a ValueError
            pass
    return out


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded ``oodx.*`` metadata of an ONNX file (needs neither onnx nor onnxruntime)."""
    return decode_metadata(describe_onnx(path)["metadata_props"])


__all__ = ["FLOAT_KEYS", "JSON_KEYS", "PREFIX", "decode_metadata", "read_metadata"]
