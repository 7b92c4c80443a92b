"""Export an oodx checkpoint plus a scorer to one verified ONNX graph: the run.

The graph maps ``input`` (dynamic batch) to ``output`` (the model output), ``score`` (outlier
score, higher = more OOD; ``(B,)`` or ``(B, H, W)`` for segmentation) and ``prediction`` (int64
class). Stages, each in its own module: resolve (``ood_core.resolve`` picks the scorer) ->
:mod:`convert` (trace, metadata) -> :mod:`verify` (checker, lineage, onnxruntime vs PyTorch)
-> :mod:`fp16` -> :mod:`calibrate` (threshold) -> :mod:`write` (atomic move into place).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import onnx
from torch import Tensor, nn

import ood_core
from ood_core.checkpoint import Checkpoint
from ood_core.errors import OODXError
from ood_core.resolve import Resolved, resolve
from ood_exporter_onnx import convert
from ood_exporter_onnx.calibrate import calibrate_threshold
from ood_exporter_onnx.convert import OODGraph
from ood_exporter_onnx.decision import append_is_ood, check_is_ood
from ood_exporter_onnx.errors import ExportError, import_onnxruntime
from ood_exporter_onnx.fp16 import fp16_deviation
from ood_exporter_onnx.graph import convert_fp16
from ood_exporter_onnx.metadata import build_metadata, set_metadata
from ood_exporter_onnx.options import ExportOptions
from ood_exporter_onnx.preprocess import Preprocess, Preprocessed, prepend
from ood_exporter_onnx.report import ExportReport
from ood_exporter_onnx.verify import verify_onnx
from ood_exporter_onnx.write import output_path, save_proto, staged
from ood_runtime.metadata import PREFIX, decode_metadata
from ood_runtime.model import check_runtime_install


def export(
    checkpoint: Checkpoint | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    scorer: Resolved | None = None,
    options: dict[str, Any] | None = None,
) -> ExportReport:
    """The registered ``onnx`` exporter (the calling convention of docs/plugins.md).

    ``scorer`` is the scorer ``ood_core.resolve.resolve`` picked (``None``: the checkpoint's
    natural scorer); ``options`` holds :class:`ExportOptions` fields, an unknown key is an error.
    """
    opts = ExportOptions.from_mapping(options)
    _check_runtime()
    ckpt = _load(checkpoint, trust_pickle=False)
    return _run(ckpt, scorer if scorer is not None else _resolve(ckpt, None, None), path, opts)


#: the option names ``export`` accepts (the CLI refuses others before loading anything)
export.options = ExportOptions.names()  # type: ignore[attr-defined]


def export_onnx(
    checkpoint: str | os.PathLike[str] | Checkpoint,
    scorer: str | nn.Module | None,
    output: str | os.PathLike[str],
    *,
    options: ExportOptions | None = None,
    scorer_kwargs: dict[str, Any] | None = None,
    trust_pickle: bool = False,
    **option_keywords: Any,
) -> ExportReport:
    """Export ``checkpoint`` with ``scorer`` to the ONNX file ``output`` and verify it.

    ``checkpoint`` is a path (see :func:`ood_core.load`; ``trust_pickle`` as there) or a loaded
    :class:`~ood_core.checkpoint.Checkpoint`. ``scorer`` is a registered name (with
    ``scorer_kwargs``), a scorer module (a fitted one, say) or ``None`` (the natural scorer of
    the checkpoint's loss); ``ood_core.resolve`` decides and its refusals are
    :class:`ExportError`. ``options`` is an :class:`ExportOptions`, or give its fields as
    keywords (``opset=18, calibrate=ids, tpr=0.9, fp16=True, ...``). Nothing is written unless
    verification passes. Returns an :class:`ExportReport`.
    """
    if options is not None and option_keywords:
        raise ExportError(
            f"give options= or option keywords, not both (got {sorted(option_keywords)})"
        )
    opts = options if options is not None else ExportOptions.from_mapping(option_keywords)
    _check_runtime()
    ckpt = _load(checkpoint, trust_pickle=trust_pickle)
    picked = _resolve(ckpt, scorer, scorer_kwargs)
    return _run(ckpt, picked, output, opts, scorer_kwargs=scorer_kwargs)


def _check_runtime() -> None:
    import_onnxruntime("verifying the exported model")
    check_runtime_install()


def _load(checkpoint: Any, *, trust_pickle: bool) -> Checkpoint:
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    return ood_core.load(checkpoint, trust_pickle=trust_pickle)


def _resolve(ckpt: Checkpoint, scorer: Any, scorer_kwargs: dict[str, Any] | None) -> Resolved:
    """Stage *resolve*: ``ood_core.resolve`` picks the scorer; its refusals as ExportError."""
    if scorer is not None and not isinstance(scorer, (str, nn.Module)):
        raise ExportError(
            f"scorer must be a registered name, a module or None, got {type(scorer).__name__}"
        )
    try:
        picked = resolve(ckpt, scorer, **dict(scorer_kwargs or {}))
    except OODXError as exc:
        raise ExportError(str(exc)) from None
    except (TypeError, ValueError) as exc:  # the scorer's constructor refused the keywords
        raise ExportError(f"cannot create scorer {scorer!r}: {exc}") from None
    if isinstance(scorer, nn.Module):  # name the module by its registration, for the metadata
        picked = dataclasses.replace(picked, name=_registered_name(scorer) or picked.name)
    return picked


def _registered_name(module: nn.Module) -> str | None:
    for info in ood_core.list_scorers():
        try:
            if info.load() is type(module):
                return info.name
        except OODXError:
            continue
    return None


def _run(
    ckpt: Checkpoint,
    picked: Resolved,
    output: Any,
    opts: ExportOptions,
    *,
    scorer_kwargs: dict[str, Any] | None = None,
) -> ExportReport:
    """resolve -> convert (preprocess) -> verify (fp16, calibrate, decide) -> write, timed."""
    started = time.perf_counter()
    x = convert.trace_input(ckpt, opts.example_input, opts.input_shape)
    spec = Preprocess.build(opts.input_format, opts.mean, opts.std, opts.resize, tuple(x.shape))
    wrapper = OODGraph(ckpt.model, picked.scorer.eval(), picked.reads).eval()
    ref = convert.reference(wrapper, x, picked.name)
    out_path = output_path(output)
    proto = convert.to_onnx(wrapper, x, opts.opset)
    about = {
        "name": picked.name,
        "reads": picked.reads,
        "kwargs": scorer_kwargs or getattr(picked, "kwargs", None),
        "prediction": wrapper.prediction_source(),
    }
    metadata = build_metadata(ckpt, about, x, ref, opts.opset, opts.fp16)
    graph: Graph = (proto, wrapper, x)
    if spec is not None:
        metadata["preprocess"] = json.dumps(spec.describe())
        metadata["input_shape"] = json.dumps(spec.raw_shape())
        metadata["input_dtype"] = "uint8"
        graph = (proto, Preprocessed(spec, wrapper).eval(), spec.example())
    with staged(out_path) as tmp:
        checked = _check_and_finish(graph, spec, metadata, tmp, opts)
    return ExportReport(
        path=out_path,
        scorer=picked.name,
        scorer_source=picked.source,
        loss=ckpt.loss_name,
        opset=opts.opset,
        fp16=opts.fp16,
        input_shape=json.loads(metadata["input_shape"]),
        batch_sizes=opts.batch_sizes,
        rtol=opts.rtol,
        atol=opts.atol,
        tpr=float(opts.tpr) if checked["threshold"] is not None else None,
        size_bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - started,
        metadata={f"{PREFIX}{k}": v for k, v in metadata.items()},
        **checked,
    )


#: ``(float graph without preprocessing, PyTorch reference module, example graph input)``
Graph = tuple[onnx.ModelProto, nn.Module, Tensor]


def _check_and_finish(
    graph: Graph,
    spec: Preprocess | None,
    metadata: dict[str, str],
    tmp: Path,
    opts: ExportOptions,
) -> dict[str, Any]:
    """Write the graph to ``tmp``, verify it, measure fp16, calibrate, add ``is_ood``."""
    float_proto, reference, x = graph
    fp32_proto = prepend(float_proto, spec) if spec is not None else float_proto
    proto = fp32_proto
    if opts.fp16:  # converted without the preprocessing, which stays float32 on uint8 input
        proto = convert_fp16(float_proto)
        proto = prepend(proto, spec) if spec is not None else proto
    set_metadata(proto, metadata)
    save_proto(proto, tmp)
    diffs = verify_onnx(
        tmp,
        reference,
        x,
        batch_sizes=opts.batch_sizes,
        rtol=opts.rtol,
        atol=opts.atol,
        compare_predictions=not opts.fp16,
        fp16=opts.fp16,
    )
    deviation = fp16_deviation(fp32_proto, tmp, x, opts.batch_sizes) if opts.fp16 else None
    threshold, n_cal = None, 0
    if opts.calibrate is not None:
        channel_axis = (3 if spec.layout == "NHWC" else 1) if spec and spec.resize else None
        threshold, n_cal = calibrate_threshold(
            tmp, opts.calibrate, opts.tpr, opts.calibration_batch_size, x, channel_axis
        )
        metadata["threshold"] = repr(float(threshold))
        metadata["threshold_tpr"] = repr(float(opts.tpr))
        metadata["calibration_samples"] = str(n_cal)
        append_is_ood(proto, threshold)
    metadata["verification"] = json.dumps(
        {
            "batch_sizes": list(opts.batch_sizes),
            "rtol": opts.rtol,
            "atol": opts.atol,
            "max_abs_diff": diffs,
            "against": "PyTorch on the preprocessed input" if spec else "PyTorch",
        }
    )
    set_metadata(proto, metadata)
    save_proto(proto, tmp)
    onnx.checker.check_model(str(tmp))
    if threshold is not None:
        check_is_ood(tmp, x, threshold, max(opts.batch_sizes))
    return {
        "max_abs_diff": diffs,
        "fp16_score_deviation": deviation,
        "threshold": threshold,
        "calibration_samples": n_cal,
    }


__all__ = [
    "ExportOptions",
    "ExportReport",
    "OODGraph",
    "decode_metadata",
    "export",
    "export_onnx",
    "verify_onnx",
]
