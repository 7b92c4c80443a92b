"""Export an oodx checkpoint plus a scorer to one verified ONNX graph.

The graph maps ``input`` (dynamic batch) to ``output`` (the model output), ``score`` (outlier
score, higher = more OOD; ``(B,)`` or ``(B, H, W)`` for segmentation) and ``prediction`` (int64
class). It is exported with ``torch.onnx.export(..., dynamo=True)`` and verified before it is
moved into place: ``onnx.checker``, the graph's lineage (every output is computed from the
input: a scorer folded into constants fails), and onnxruntime at two batch sizes matching
PyTorch within ``atol + rtol * |reference|`` and changing when the input changes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

import ood_core
from ood_core.atomic import replace_atomically, temp_file_beside
from ood_core.checkpoint import Checkpoint
from ood_core.errors import CheckpointError, OODXError
from ood_exporter_onnx import __version__
from ood_exporter_onnx.errors import ExportError, VerificationError, import_onnxruntime
from ood_exporter_onnx.graph import ancestors, convert_fp16
from ood_exporter_onnx.runtime import PREFIX, check_runtime_install, decode_metadata

FORMAT_VERSION = 1
MIN_OPSET = 18
DEFAULT_OPSET = 20
INPUT = "input"
OUTPUTS = ("output", "score", "prediction")
SCORE_CONVENTION = "higher-is-ood"
_EXTERNAL_DATA_LIMIT = 1_800_000_000  # bytes of initializers above which the 2 GB proto limit bites


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it was verified."""

    path: Path
    scorer: str
    scorer_source: str
    loss: str | None
    opset: int
    fp16: bool
    input_shape: list[int | None]
    batch_sizes: tuple[int, ...]
    rtol: float
    atol: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    fp16_score_deviation: dict[str, float] | None = None
    threshold: float | None = None
    tpr: float | None = None
    calibration_samples: int = 0
    size_bytes: int = 0
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines in words, for the command line."""
        lines = [
            f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, opset {self.opset}"
            f"{', fp16' if self.fp16 else ''}) in {self.seconds:.1f} s",
            f"  scorer {self.scorer} ({self.scorer_source}); loss {self.loss or '(none)'}; "
            f"input {self.input_shape} (None = batch)",
            f"  verified in onnxruntime at batch sizes {list(self.batch_sizes)}: max |onnx - "
            f"torch| "
            + ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
            + (
                " (fp16: reported, not held to a tolerance)"
                if self.fp16
                else f" (tolerance atol {self.atol:g} + rtol {self.rtol:g} * |torch|)"
            ),
        ]
        if self.fp16_score_deviation:
            dev = self.fp16_score_deviation
            lines.append(
                f"  fp16 vs fp32 score: max abs {dev['max_abs']:.3e}, max rel "
                f"{dev['max_rel']:.3e}, prediction agreement {dev['prediction_agreement']:.1%}"
            )
        if self.threshold is not None:
            lines.append(
                f"  threshold {self.threshold:.6g}: keeps {self.tpr:.0%} of "
                f"{self.calibration_samples} ID samples (score > threshold = OOD)"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------------------------
# the wrapper module


class OODGraph(nn.Module):
    """``x -> (output, score, prediction)``: the model followed by the scorer.

    A model returning a dict gives the entry the scorer ``reads`` as ``output``. ``prediction``
    is ``scorer.predict(output)``; for a scorer without one, the argmax of the dict's ``logits``
    if there are any, else the argmax over dim 1 of ``output``.
    """

    def __init__(self, model: nn.Module, scorer: nn.Module, reads: str = "logits") -> None:
        super().__init__()
        self.model = model
        self.scorer = scorer
        self.reads = reads

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raw = self.model(x)
        out = raw[self.reads] if isinstance(raw, Mapping) else raw
        score = self.scorer(out)
        predict = getattr(self.scorer, "predict", None)
        if callable(predict):
            prediction = predict(out)
        elif isinstance(raw, Mapping) and "logits" in raw:
            prediction = raw["logits"].argmax(dim=1)
        else:  # a scorer without a class decision (features): argmax of what it reads
            prediction = out.argmax(dim=1)
        return out, score, prediction.to(torch.int64)

    def prediction_source(self) -> str:
        """How ``prediction`` is computed, in words (recorded in the metadata)."""
        if callable(getattr(self.scorer, "predict", None)):
            return "scorer.predict"
        return "argmax of the model output (the scorer has no class decision)"


# --------------------------------------------------------------------------------------------
# export


def export_onnx(
    checkpoint: str | os.PathLike[str] | Checkpoint,
    scorer: str | nn.Module,
    output: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    calibrate: Any = None,
    tpr: float = 0.95,
    batch_sizes: Sequence[int] = (1, 7),
    scorer_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    example_input: Any = None,
    input_shape: Sequence[int] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    calibration_batch_size: int = 256,
) -> ExportReport:
    """Export ``checkpoint`` with ``scorer`` to the ONNX file ``output`` and verify it.

    ``checkpoint`` is a path (see :func:`ood_core.load`; ``trust_pickle`` as there) or a loaded
    :class:`~ood_core.checkpoint.Checkpoint`. ``scorer`` is a registered scorer name (with
    ``scorer_kwargs``) or a scorer module (a fitted one, say). A name that is the natural scorer
    of the checkpoint's loss gives ``loss.scorer()`` with the trained state; a scorer that needs
    loss state from a checkpoint without that loss is an :class:`ExportError`.

    ``calibrate`` (ID inputs: array, tensor or ``.npy`` path) sets the threshold that keeps a
    fraction ``tpr`` of their scores (computed by the exported graph itself). ``fp16`` converts
    the graph to float16 with float32 inputs and outputs and reports the score deviation.
    ``batch_sizes`` are the onnxruntime batch sizes checked against PyTorch within
    ``atol + rtol * |torch|``. ``example_input``/``input_shape`` (without batch) are needed
    only for checkpoints that carry no example (pickled modules). Nothing is written unless
    verification passes. Returns an :class:`ExportReport`.
    """
    started = time.perf_counter()
    opset = _check_opset(opset)
    batch_sizes = _check_batch_sizes(batch_sizes)
    if not (isinstance(tpr, (int, float)) and 0.0 < float(tpr) <= 1.0):
        raise ExportError(f"tpr must be a fraction in (0, 1], got {tpr!r}")
    import_onnxruntime("verifying the exported model")
    check_runtime_install()

    ckpt = checkpoint
    if not isinstance(ckpt, Checkpoint):
        ckpt = ood_core.load(checkpoint, trust_pickle=trust_pickle)
    module, scorer_name, source, reads = resolve_scorer(ckpt, scorer, scorer_kwargs)
    x = _trace_input(ckpt, example_input, input_shape)
    module.eval()
    wrapper = OODGraph(ckpt.model, module, reads).eval()
    with torch.no_grad():
        try:
            ref = wrapper(x)
        except Exception as exc:  # noqa: BLE001 - report what the scorer/model raised
            raise ExportError(
                f"scorer {scorer_name!r} (reads {reads}) cannot score this model's output: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    _check_reference(ref, scorer_name)

    out_path = Path(output)
    if out_path.is_dir():
        raise ExportError(f"output {out_path} is a folder; give a file name such as model.onnx")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    proto = _to_onnx(wrapper, x, opset)
    fp32_proto = proto
    if fp16:
        proto = convert_fp16(proto)
    metadata = _metadata(
        ckpt, scorer_name, reads, scorer_kwargs, x, ref, opset, fp16, wrapper.prediction_source()
    )
    _set_metadata(proto, metadata)

    tmp = temp_file_beside(out_path)  # mode as open() gives it, not mkstemp's 0600
    try:
        _save(proto, tmp)
        diffs = verify_onnx(
            tmp,
            wrapper,
            x,
            batch_sizes=batch_sizes,
            rtol=rtol,
            atol=atol,
            compare_predictions=not fp16,
            fp16=fp16,
        )
        deviation = _fp16_deviation(fp32_proto, tmp, x, batch_sizes) if fp16 else None
        threshold = None
        n_cal = 0
        if calibrate is not None:
            threshold, n_cal = _calibrate(tmp, calibrate, tpr, calibration_batch_size, x)
            metadata.update(
                {
                    "threshold": repr(float(threshold)),
                    "threshold_tpr": repr(float(tpr)),
                    "calibration_samples": str(n_cal),
                }
            )
        metadata["verification"] = json.dumps(
            {"batch_sizes": list(batch_sizes), "rtol": rtol, "atol": atol, "max_abs_diff": diffs}
        )
        _set_metadata(proto, metadata)
        _save(proto, tmp)
        onnx.checker.check_model(str(tmp))
        _replace(tmp, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with contextlib.suppress(FileNotFoundError):
            Path(f"{tmp}.data").unlink()
    return ExportReport(
        path=out_path,
        scorer=scorer_name,
        scorer_source=source,
        loss=ckpt.loss_name,
        opset=opset,
        fp16=fp16,
        input_shape=[None, *map(int, x.shape[1:])],
        batch_sizes=batch_sizes,
        rtol=rtol,
        atol=atol,
        max_abs_diff=diffs,
        fp16_score_deviation=deviation,
        threshold=threshold,
        tpr=float(tpr) if threshold is not None else None,
        calibration_samples=n_cal,
        size_bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - started,
        metadata={f"{PREFIX}{k}": v for k, v in metadata.items()},
    )


def _check_opset(opset: Any) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ExportError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is too old: torch's ONNX exporter (dynamo=True) honours opset "
            f"{MIN_OPSET} and newer. Use --opset {MIN_OPSET} or higher (default {DEFAULT_OPSET})."
        )
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ExportError(
            f"opset {opset} is newer than this onnx ({onnx.__version__}) knows: {newest}"
        )
    return opset


def _check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in batch_sizes)
    except (TypeError, ValueError):
        raise ExportError(f"batch_sizes must be positive integers, got {batch_sizes!r}") from None
    if any(b < 1 for b in sizes) or len(set(sizes)) < 2:
        raise ExportError(
            f"batch_sizes must hold at least two different positive sizes, got {batch_sizes!r}"
        )
    return sizes


def _registered_name(kind: str, obj: Any) -> Any:
    lister = ood_core.list_scorers if kind == "scorer" else ood_core.list_losses
    for info in lister():
        try:
            if info.load() is type(obj):
                return info
        except OODXError:
            continue
    return None


def resolve_scorer(
    ckpt: Checkpoint, scorer: str | nn.Module, scorer_kwargs: Mapping[str, Any] | None = None
) -> tuple[nn.Module, str, str, str]:
    """``(module, name, source, reads)`` for ``scorer`` on ``ckpt`` (see :func:`export_onnx`)."""
    if isinstance(scorer, nn.Module):
        info = _registered_name("scorer", scorer)
        name = info.name if info is not None else type(scorer).__name__
        reads = getattr(scorer, "reads", None) or (info.reads if info else "logits")
        return scorer, name, "given module", reads
    if not isinstance(scorer, str):
        raise ExportError(f"scorer must be a registered name or a module, got {type(scorer)!r}")
    try:
        info = ood_core.get_info("scorer", scorer)
    except OODXError as exc:
        raise ExportError(str(exc)) from None
    loss_info = ckpt.loss_info
    natural = loss_info.get("scorer")
    if not natural and ckpt.loss_name:
        with contextlib.suppress(OODXError):
            natural = ood_core.get_info("loss", ckpt.loss_name).scorer
    if ckpt.loss_name and natural == info.name and not scorer_kwargs:
        try:
            loss = ckpt.build_loss()
        except (CheckpointError, OODXError) as exc:
            raise ExportError(
                f"scorer {info.name!r} comes from the checkpoint's loss {ckpt.loss_name!r}, "
                f"which could not be rebuilt: {exc}"
            ) from None
        module = loss.scorer()
        return module, info.name, f"from the trained loss {ckpt.loss_name!r}", _reads(module, info)
    if info.needs_loss_state:
        owners = [loss.name for loss in ood_core.list_losses() if loss.scorer == info.name]
        have = (
            f"its loss is {ckpt.loss_name!r}" if ckpt.loss_name else "it was saved without a loss"
        )
        raise ExportError(
            f"scorer {info.name!r} needs state learned by its loss "
            f"({' or '.join(repr(o) for o in owners) or 'its training loss'}), e.g. class "
            f"centres, but checkpoint {ckpt.path or ''} has no such loss state ({have}). Save the "
            f"model with ood_core.save(path, model, loss=criterion, example_input=x) where "
            f"criterion is the trained {' / '.join(owners) or 'loss'} loss, or pick a scorer "
            "that needs no loss state (msp, energy, max-logit, entropy)."
        )
    if info.needs_fit:
        raise ExportError(
            f"scorer {info.name!r} must be fitted on training data before export. Fit it in "
            f"Python (scorer = ood_core.create_scorer({info.name!r}, ...); scorer.fit(...)) and "
            "pass the fitted module: export_onnx(checkpoint, scorer=scorer, output=...)."
        )
    try:
        module = ood_core.create_scorer(info.name, **dict(scorer_kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise ExportError(f"cannot create scorer {info.name!r}: {exc}") from None
    return module, info.name, "created by name", _reads(module, info)


def _reads(module: nn.Module, info: Any) -> str:
    return getattr(module, "reads", None) or info.reads


def _trace_input(ckpt: Checkpoint, example_input: Any, input_shape: Sequence[int] | None) -> Tensor:
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


def _to_onnx(wrapper: nn.Module, x: Tensor, opset: int) -> onnx.ModelProto:
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


def _plugins(ckpt: Checkpoint, scorer_name: str) -> dict[str, str]:
    plugins: dict[str, str] = {"ood-core": ood_core.__version__, "ood-exporter-onnx": __version__}
    plugins.update(ckpt.metadata.get("plugins") or {})
    with contextlib.suppress(OODXError):
        info = ood_core.get_info("scorer", scorer_name)
        if info.distribution:
            plugins[info.distribution] = info.version
    return dict(sorted(plugins.items()))


def _metadata(
    ckpt: Checkpoint,
    scorer_name: str,
    reads: str,
    scorer_kwargs: Mapping[str, Any] | None,
    x: Tensor,
    ref: tuple[Tensor, Tensor, Tensor],
    opset: int,
    fp16: bool,
    prediction: str,
) -> dict[str, str]:
    out, score, _ = ref
    return {
        "format_version": str(FORMAT_VERSION),
        "scorer": scorer_name,
        "scorer_reads": reads,
        "scorer_kwargs": json.dumps(dict(scorer_kwargs or {}), default=str),
        "loss": ckpt.loss_name or "",
        "loss_kwargs": json.dumps(ckpt.loss_kwargs or {}),
        "plugins": json.dumps(_plugins(ckpt, scorer_name)),
        "classes": json.dumps(ckpt.classes),
        "input_shape": json.dumps([None, *map(int, x.shape[1:])]),
        "input_dtype": str(x.dtype).removeprefix("torch."),
        "output_shape": json.dumps([None, *map(int, out.shape[1:])]),
        "task": "segmentation" if score.dim() == 3 else "classification",
        "score_convention": SCORE_CONVENTION,
        "prediction": prediction,
        "opset": str(opset),
        "fp16": "true" if fp16 else "false",
        "checkpoint_source": ckpt.source,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }


def _set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    keep = [p for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"{PREFIX}{key}", str(value)
    proto.producer_name = "oodx"
    proto.producer_version = __version__
    proto.doc_string = (
        f"oodx model + scorer {metadata.get('scorer')!r}: input -> output, score "
        "(higher = more OOD), prediction"
    )


def _save(proto: onnx.ModelProto, path: Path) -> None:
    size = sum(t.ByteSize() for t in proto.graph.initializer)
    if size > _EXTERNAL_DATA_LIMIT:  # protobuf cannot serialise 2 GB: weights go to a side file
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
        )
    else:
        onnx.save_model(proto, str(path))


def _replace(tmp: Path, target: Path) -> None:
    side = Path(f"{tmp}.data")
    if side.exists():  # > 2 GB: the weights file follows (its name is recorded in the graph)
        raise ExportError(
            f"model is larger than 2 GB ({side.stat().st_size / 1e9:.1f} GB of weights); "
            "external-data export is not supported yet"
        )
    replace_atomically(tmp, target)


# --------------------------------------------------------------------------------------------
# verification


def _inputs_like(x: Tensor, batch: int, seed: int) -> Tensor:
    """A batch of ``batch`` inputs near the example rows (cycled), each row different."""
    gen = torch.Generator().manual_seed(seed)
    rows = x[torch.arange(batch) % x.shape[0]]
    if x.dtype.is_floating_point:
        scale = float(x.float().std()) if x.numel() > 1 else 1.0
        scale = scale if math.isfinite(scale) and scale > 0 else 1.0
        noise = torch.randn(rows.shape, generator=gen) * (0.5 * scale)
        return (rows.float() + noise).to(x.dtype)
    if x.dtype == torch.bool:
        return torch.randint(0, 2, rows.shape, generator=gen).bool()
    lo, hi = int(x.min()), int(x.max())
    return torch.randint(lo, max(hi, lo + 1) + 1, rows.shape, generator=gen, dtype=x.dtype)


def _session(path: Path) -> Any:
    ort = import_onnxruntime("verifying the exported model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise VerificationError(f"onnxruntime cannot load the exported graph: {exc}") from None


def _check_structure(proto: onnx.ModelProto) -> None:
    graph = proto.graph
    init = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    if [i.name for i in inputs] != [INPUT]:
        raise VerificationError(
            f"the graph must have exactly one input named {INPUT!r}, has "
            f"{[i.name for i in inputs]} (the exporter dropped or renamed the input)"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        raise VerificationError("the graph's input has a fixed batch dimension; it must be dynamic")
    names = [o.name for o in graph.output]
    if names != list(OUTPUTS):
        raise VerificationError(f"the graph's outputs must be {list(OUTPUTS)}, got {names}")
    pred = graph.output[2].type.tensor_type.elem_type
    if pred != onnx.TensorProto.INT64:
        raise VerificationError(
            f"'prediction' must be int64, is {onnx.TensorProto.DataType.Name(pred)}"
        )
    for name in OUTPUTS:
        if INPUT not in ancestors(graph, name) and name != INPUT:
            raise VerificationError(
                f"the graph's {name!r} is not computed from its input: the exporter folded it "
                "into constants (a scorer that reads Python values or .item() of tensors "
                "traces to a constant). Refusing to write a model that ignores its input."
            )


def verify_onnx(
    path: str | os.PathLike[str],
    reference: nn.Module,
    example: Tensor,
    *,
    batch_sizes: Sequence[int] = (1, 7),
    rtol: float = 1e-4,
    atol: float = 1e-5,
    compare_predictions: bool = True,
    fp16: bool = False,
) -> dict[str, float]:
    """Check the ONNX file against ``reference`` (the PyTorch wrapper); max abs diffs per output.

    Runs ``onnx.checker`` (full), checks names, dynamic batch and lineage, then onnxruntime at
    each batch size against PyTorch (``|onnx - torch| <= atol + rtol * |torch|``; predictions
    equal when ``compare_predictions``) and that scores change when the input changes. With
    ``fp16`` the differences are measured but not held to the tolerance (see the fp16 deviation
    in the report); finiteness, shapes and input dependence are checked. Raises
    :class:`VerificationError`.
    """
    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker raises ValidationError and others
        raise VerificationError(f"onnx.checker rejects the exported graph: {exc}") from None
    _check_structure(onnx.load(str(path)))
    session = _session(path)
    diffs = {"output": 0.0, "score": 0.0}
    for i, batch in enumerate(batch_sizes):
        x = _inputs_like(example, batch, seed=1000 + i)
        with torch.no_grad():
            ref = [t.detach().cpu().numpy() for t in reference(x)]
        try:
            got = session.run(list(OUTPUTS), {INPUT: x.numpy()})
        except Exception as exc:  # noqa: BLE001
            raise VerificationError(
                f"onnxruntime fails at batch size {batch}: {type(exc).__name__}: {exc}"
            ) from None
        for name, r, g in zip(OUTPUTS, ref, got):
            if tuple(r.shape) != tuple(g.shape):
                raise VerificationError(
                    f"at batch size {batch}, onnxruntime's {name!r} has shape {g.shape}, "
                    f"PyTorch's {r.shape}"
                )
            if name == "prediction":
                if compare_predictions and not np.array_equal(r, g):
                    n = int((r != g).sum())
                    raise VerificationError(
                        f"at batch size {batch}, {n} of {r.size} predictions differ between "
                        "onnxruntime and PyTorch"
                    )
                continue
            if not np.all(np.isfinite(g)):
                raise VerificationError(f"onnxruntime's {name!r} is not finite at batch {batch}")
            r64, g64 = r.astype(np.float64), g.astype(np.float64)
            err = np.abs(g64 - r64)
            diffs[name] = max(diffs[name], float(err.max(initial=0.0)))
            if fp16:  # reported, not held to the fp32 tolerance
                continue
            bad = err > atol + rtol * np.abs(r64)
            if bad.any():
                raise VerificationError(
                    f"at batch size {batch}, onnxruntime's {name!r} differs from PyTorch by up "
                    f"to {float(err.max()):.3g} (tolerance atol {atol:g} + rtol {rtol:g} * "
                    f"|torch|; {int(bad.sum())} of {bad.size} values out of tolerance)"
                )
    _check_input_dependence(session, reference, example, max(batch_sizes), atol)
    return diffs


def _check_input_dependence(
    session: Any, reference: nn.Module, example: Tensor, batch: int, atol: float
) -> None:
    batch = max(batch, 2)
    x1 = _inputs_like(example, batch, seed=1)
    x2 = _inputs_like(example, batch, seed=2)
    s1, s2 = (session.run(["score"], {INPUT: x.numpy()})[0] for x in (x1, x2))
    if np.allclose(s1, s2, rtol=0.0, atol=atol):
        with torch.no_grad():
            t1, t2 = (reference(x)[1].numpy() for x in (x1, x2))
        where = (
            "in PyTorch too (the model or scorer ignores its input)"
            if np.allclose(t1, t2, rtol=0.0, atol=atol)
            else "although PyTorch's does (the exporter folded the scorer into constants)"
        )
        raise VerificationError(
            f"the exported score does not change when the input changes, {where}; refusing to "
            "write the model"
        )


def _fp16_deviation(
    fp32_proto: onnx.ModelProto, fp16_path: Path, x: Tensor, batch_sizes: Sequence[int]
) -> dict[str, float]:
    ort = import_onnxruntime("verifying the exported model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    s32 = ort.InferenceSession(
        fp32_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    s16 = _session(fp16_path)
    batch = max(64, *batch_sizes)
    sample = _inputs_like(x, batch, seed=7).numpy()
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


def _calibration_array(calibrate: Any, x: Tensor) -> np.ndarray:
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
    if arr.ndim != x.dim() or tuple(arr.shape[1:]) != expected or arr.shape[0] < 1:
        raise ExportError(
            f"calibration inputs must have shape (N, {', '.join(map(str, expected))}) like the "
            f"model's input, got {arr.shape}"
        )
    return np.ascontiguousarray(arr.astype(x.numpy().dtype))


def threshold_for_id_rate(scores: np.ndarray, keep: float) -> float:
    """The score threshold keeping a fraction ``keep`` of ``scores`` (ood_core.metrics if there)."""
    try:
        from ood_core.metrics import threshold_for_id_rate as core
    except ImportError:  # pragma: no cover - older ood-core
        core = None
    if core is not None:
        return float(core(scores, keep))
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))  # pragma: no cover
    k = min(max(math.ceil(keep * s.size * (1 - 1e-12)), 1), s.size)  # pragma: no cover
    return float(s[k - 1])  # pragma: no cover


def _calibrate(
    path: Path, calibrate: Any, tpr: float, batch_size: int, x: Tensor
) -> tuple[float, int]:
    arr = _calibration_array(calibrate, x)
    session = _session(path)
    scores = [
        session.run(["score"], {INPUT: arr[i : i + batch_size]})[0]
        for i in range(0, arr.shape[0], batch_size)
    ]
    flat = np.concatenate([s.reshape(-1) for s in scores])
    if not np.all(np.isfinite(flat)):
        raise ExportError("the model gives non-finite scores on the calibration inputs")
    return threshold_for_id_rate(flat, float(tpr)), int(arr.shape[0])


__all__ = [
    "ExportReport",
    "OODGraph",
    "decode_metadata",
    "export_onnx",
    "resolve_scorer",
    "verify_onnx",
]
