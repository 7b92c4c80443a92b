"""The ``oodx.*`` metadata properties of an exported graph (see docs/export.md, Metadata)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

import onnx
import torch
from torch import Tensor

import ood_core
from ood_core.checkpoint import Checkpoint
from ood_core.errors import OODXError
from ood_exporter_onnx import __version__
from ood_runtime.metadata import PREFIX

FORMAT_VERSION = 1
SCORE_CONVENTION = "higher-is-ood"


def _plugins(ckpt: Checkpoint, scorer_name: str) -> dict[str, str]:
    plugins: dict[str, str] = {"ood-core": ood_core.__version__, "ood-exporter-onnx": __version__}
    plugins.update(ckpt.metadata.get("plugins") or {})
    with contextlib.suppress(OODXError):
        info = ood_core.get_info("scorer", scorer_name)
        if info.distribution:
            plugins[info.distribution] = info.version
    return dict(sorted(plugins.items()))


def build_metadata(
    ckpt: Checkpoint,
    scorer: Mapping[str, Any],
    x: Tensor,
    ref: tuple[Tensor, Tensor, Tensor],
    opset: int,
    fp16: bool,
) -> dict[str, str]:
    """The metadata (keys without the ``oodx.`` prefix) of a graph before verification.

    ``scorer`` holds ``name``, ``reads``, ``kwargs`` and ``prediction`` (how the class decision
    is computed, in words).
    """
    out, score, _ = ref
    return {
        "format_version": str(FORMAT_VERSION),
        "scorer": scorer["name"],
        "scorer_reads": scorer["reads"],
        "scorer_kwargs": json.dumps(dict(scorer.get("kwargs") or {}), default=str),
        "loss": ckpt.loss_name or "",
        "loss_kwargs": json.dumps(ckpt.loss_kwargs or {}),
        "plugins": json.dumps(_plugins(ckpt, scorer["name"])),
        "classes": json.dumps(ckpt.classes),
        "input_shape": json.dumps([None, *map(int, x.shape[1:])]),
        "input_dtype": str(x.dtype).removeprefix("torch."),
        "output_shape": json.dumps([None, *map(int, out.shape[1:])]),
        "task": "segmentation" if score.dim() == 3 else "classification",
        "score_convention": SCORE_CONVENTION,
        "prediction": scorer["prediction"],
        "opset": str(opset),
        "fp16": "true" if fp16 else "false",
        "checkpoint_source": ckpt.source,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "extra": json.dumps(ckpt.metadata.get("extra") or {}, default=str),
    }


def set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    """Replace the ``oodx.*`` properties of ``proto`` with ``metadata``; set producer and doc."""
    keep = [p for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"{PREFIX}{key}", str(value)
    proto.producer_name = "oodx"
    proto.producer_version = __version__
    proto.doc_string = doc_string(metadata)


def doc_string(metadata: Mapping[str, str]) -> str:
    """One sentence: what the model is and how to call it (the graph's ``doc_string``)."""
    pre = json.loads(metadata["preprocess"]) if metadata.get("preprocess") else None
    shape = json.loads(metadata.get("input_shape", "null")) or []
    dims = ", ".join(
        "batch" if i == 0 else ("any" if d is None else str(d)) for i, d in enumerate(shape)
    )
    if pre:
        feed = (
            f"raw {pre['color']} images as `input` uint8[{dims}] ({pre['layout']}, 0..255; "
            "normalised" + (" and resized" if pre.get("resize") else "") + " inside the graph)"
        )
    else:
        feed = f"`input` {metadata.get('input_dtype', 'float32')}[{dims}]"
    loss = f", trained with {metadata['loss']}" if metadata.get("loss") else ""
    outputs = ["`output`", "`score` (higher = more OOD)", "`prediction` (class index)"]
    if metadata.get("threshold"):
        outputs.append(f"`is_ood` (score > {float(metadata['threshold']):.6g} or not finite)")
    return (
        f"An oodx out-of-distribution detector ({metadata.get('task', 'classification')} model "
        f"with the {metadata.get('scorer')} scorer{loss}): feed {feed} and it returns "
        f"{', '.join(outputs[:-1])} and {outputs[-1]}."
    )


__all__ = ["FORMAT_VERSION", "SCORE_CONVENTION", "build_metadata", "doc_string", "set_metadata"]
