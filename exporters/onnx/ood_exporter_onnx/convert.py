"""Stage *convert*: the model and scorer as one module, traced to an ONNX proto.

``OODGraph`` maps ``input`` to ``(output, score, prediction)``; :func:`to_onnx` exports it with
``torch.onnx.export(..., dynamo=True)`` and a dynamic batch dimension.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from ood_core.checkpoint import Checkpoint
from ood_exporter_onnx.errors import ExportError

INPUT = "input"
OUTPUTS = ("output", "score", "prediction")


class OODGraph(nn.Module):
    """``x -> (output, score, prediction)``: the model followed by the scorer.

    A model returning a dict gives the entry the scorer ``reads`` as ``output``. ``prediction``
    is ``scorer.predict(output)`` when that is a class decision (``scorer.predicts``; a module
    without the attribute: when it has ``predict``); else the argmax of the model's ``logits``
    (a dict entry, or ``output`` itself when the scorer reads logits); else ``-1`` for every
    sample: features alone carry no class decision.
    """

    def __init__(self, model: nn.Module, scorer: nn.Module, reads: str = "logits") -> None:
        super().__init__()
        if not isinstance(reads, str):
            raise ExportError(
                f"the onnx exporter feeds the scorer one model output; this scorer reads {reads}"
            )
        self.model = model
        self.scorer = scorer
        self.reads = reads

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raw = self.model(x)
        out = raw[self.reads] if isinstance(raw, Mapping) else raw
        score = self.scorer(out)
        source = self._source(raw)
        if source == "scorer":
            prediction = self.scorer.predict(out)
        elif source == "logits":
            prediction = (raw["logits"] if isinstance(raw, Mapping) else out).argmax(dim=1)
        else:  # no class decision: -1, computed from the score so it follows the input
            prediction = torch.full_like(score, -1, dtype=torch.int64)
        return out, score, prediction.to(torch.int64)

    def _source(self, raw: Any) -> str:
        """Where ``prediction`` comes from: ``scorer``, ``logits`` or ``none``."""
        predict = getattr(self.scorer, "predict", None)
        if callable(predict) and getattr(self.scorer, "predicts", True):
            return "scorer"
        if (isinstance(raw, Mapping) and "logits" in raw) or self.reads == "logits":
            return "logits"
        return "none"

    def prediction_source(self) -> str:
        """How ``prediction`` is computed, in words (recorded in the metadata; the model's
        outputs as :func:`reference` saw them)."""
        return {
            "scorer": "scorer.predict",
            "logits": "argmax of the model's logits (the scorer has no class decision)",
            "none": "-1: no class decision (the model outputs no logits, the scorer predicts none)",
        }[getattr(self, "seen_source", None) or self._source(None)]


def trace_input(ckpt: Checkpoint, example_input: Any, input_shape: Sequence[int] | None) -> Tensor:
    """The batch of two the graph is traced with (the checkpoint's example, else one given)."""
    if example_input is not None:
        x = torch.as_tensor(example_input)
    elif ckpt.example_input is not None:
        x = ckpt.example_input
    elif input_shape is not None:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((2, *map(int, input_shape)), generator=gen)
    else:
        raise ExportError(
            "this checkpoint carries no example input (it is a pickled module): give the input "
            "shape without the batch dimension (input_shape=(3, 32, 32); CLI --input-shape 3,32,32)"
        )
    x = x.detach().cpu()
    if x.dim() < 1 or x.shape[0] < 1:
        raise ExportError(f"example input must be a batch, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        x = x.repeat(2, *([1] * (x.dim() - 1)))
    return x[:2].contiguous()


def reference(wrapper: OODGraph, x: Tensor, scorer_name: str) -> tuple[Tensor, Tensor, Tensor]:
    """PyTorch's ``(output, score, prediction)`` on ``x``, checked for shape (ExportError)."""
    with torch.no_grad():
        try:
            wrapper.seen_source = wrapper._source(wrapper.model(x))
            ref = wrapper(x)
        except Exception as exc:  # noqa: BLE001 - report what the scorer/model raised
            raise ExportError(
                f"scorer {scorer_name!r} (reads {wrapper.reads}) cannot score this model's "
                f"output: {type(exc).__name__}: {exc}"
            ) from None
    _check_reference(ref, scorer_name)
    return ref


def _check_reference(ref: tuple[Tensor, Tensor, Tensor], scorer_name: str) -> None:
    out, score, pred = ref
    if not isinstance(out, Tensor) or not isinstance(score, Tensor):
        raise ExportError(
            "the model must return one tensor (or a dict of tensors keyed by what the scorer "
            f"reads), got {type(out).__name__}"
        )
    if score.shape[0] != out.shape[0] or score.dim() not in (1, 3):
        raise ExportError(
            f"scorer {scorer_name!r} returned scores of shape {tuple(score.shape)} for a model "
            f"output of shape {tuple(out.shape)}; expected (B,) or (B, H, W)"
        )
    if tuple(pred.shape) != tuple(score.shape):
        raise ExportError(
            f"scorer {scorer_name!r}: predictions of shape {tuple(pred.shape)} do not match "
            f"scores of shape {tuple(score.shape)}"
        )


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints, warnings and logs (errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(devnull),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def to_onnx(wrapper: nn.Module, x: Tensor, opset: int) -> onnx.ModelProto:
    """The wrapper as an ONNX model (``torch.onnx.export(..., dynamo=True)``), batch dynamic."""
    from torch.export import Dim

    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (x,),
                dynamo=True,
                input_names=[INPUT],
                output_names=list(OUTPUTS),
                dynamic_shapes=({0: Dim("batch", min=1, max=1 << 30)},),
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds of errors
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise ExportError(
            f"torch.onnx.export (dynamo) failed: {type(exc).__name__}: {reason}. The model and "
            "scorer must be traceable with a dynamic batch (no data-dependent shapes; "
            "torch.cdist does not export: use the broadcast difference)."
        ) from exc
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    opsets = {o.domain: o.version for o in proto.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != opset:
        raise ExportError(
            f"asked for opset {opset} but the exporter produced "
            f"{opsets.get('', opsets.get('ai.onnx'))}"
        )
    return proto


__all__ = ["INPUT", "OUTPUTS", "OODGraph", "reference", "to_onnx", "trace_input"]
