"""Stage *verify*: the written graph is checked before it may be moved into place.

``onnx.checker`` (full); one input ``input`` with a dynamic batch, the three outputs, int64
predictions; every output computed from the input (a scorer folded into constants fails);
onnxruntime at each batch size matching PyTorch within ``atol + rtol * max|torch|`` (relative to
the output's scale: float32 rounding of a large value is not a wrong graph); and a score
that changes when the input changes. Every failure is a :class:`VerificationError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from ood_exporter_onnx.convert import INPUT, OUTPUTS
from ood_exporter_onnx.errors import VerificationError, import_onnxruntime
from ood_exporter_onnx.graph import ancestors


def inputs_like(x: Tensor, batch: int, seed: int) -> Tensor:
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


def session(model: Path | bytes) -> Any:
    """An onnxruntime CPU session over a file or a serialised graph."""
    ort = import_onnxruntime("verifying the exported model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise VerificationError(f"onnxruntime cannot load the exported graph: {exc}") from None


def check_structure(proto: onnx.ModelProto) -> None:
    """One dynamic-batch input named ``input``, the three outputs, int64 predictions, lineage."""
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

    With ``fp16`` the differences are measured but not held to the tolerance (the report gives
    the fp16 deviation); finiteness, shapes and input dependence are checked. Predictions must
    be equal when ``compare_predictions``. Raises :class:`VerificationError`.
    """
    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker raises ValidationError and others
        raise VerificationError(f"onnx.checker rejects the exported graph: {exc}") from None
    check_structure(onnx.load(str(path)))
    runner = session(path)
    diffs = {"output": 0.0, "score": 0.0}
    tolerance = None if fp16 else (atol, rtol)
    for i, batch in enumerate(batch_sizes):
        x = inputs_like(example, batch, seed=1000 + i)
        with torch.no_grad():
            ref = [t.detach().cpu().numpy() for t in reference(x)]
        try:
            got = runner.run(list(OUTPUTS), {INPUT: x.numpy()})
        except Exception as exc:  # noqa: BLE001
            raise VerificationError(
                f"onnxruntime fails at batch size {batch}: {type(exc).__name__}: {exc}"
            ) from None
        for name, r, g in zip(OUTPUTS, ref, got):
            if name == "prediction":
                _compare_predictions(r, g, batch, compare_predictions)
            else:
                diffs[name] = max(diffs[name], _compare_values(name, r, g, batch, tolerance))
    check_input_dependence(runner, reference, example, max(batch_sizes), atol)
    return diffs


def _check_shape(name: str, r: np.ndarray, g: np.ndarray, batch: int) -> None:
    if tuple(r.shape) != tuple(g.shape):
        raise VerificationError(
            f"at batch size {batch}, onnxruntime's {name!r} has shape {g.shape}, "
            f"PyTorch's {r.shape}"
        )


def _compare_predictions(r: np.ndarray, g: np.ndarray, batch: int, compare: bool) -> None:
    _check_shape("prediction", r, g, batch)
    if compare and not np.array_equal(r, g):
        raise VerificationError(
            f"at batch size {batch}, {int((r != g).sum())} of {r.size} predictions differ "
            "between onnxruntime and PyTorch"
        )


def _compare_values(
    name: str, r: np.ndarray, g: np.ndarray, batch: int, tolerance: tuple[float, float] | None
) -> float:
    """Max ``|onnx - torch|`` of one output; raises past ``atol + rtol * scale`` with ``scale``
    the output's largest ``|torch|`` value (None: report only)."""
    _check_shape(name, r, g, batch)
    if not np.all(np.isfinite(g)):
        raise VerificationError(f"onnxruntime's {name!r} is not finite at batch {batch}")
    r64, g64 = r.astype(np.float64), g.astype(np.float64)
    err = np.abs(g64 - r64)
    if tolerance is not None:
        atol, rtol = tolerance
        finite = np.abs(r64[np.isfinite(r64)])
        scale = float(finite.max(initial=0.0))
        bad = ~(err <= atol + rtol * scale)
        if bad.any():
            raise VerificationError(
                f"at batch size {batch}, onnxruntime's {name!r} differs from PyTorch by up "
                f"to {float(err.max()):.3g} (tolerance atol {atol:g} + rtol {rtol:g} * "
                f"{scale:.3g}, the largest |torch| value; {int(bad.sum())} of {bad.size} values "
                "out of tolerance)"
            )
    return float(err.max(initial=0.0))


def _unchanged(a: np.ndarray, b: np.ndarray, rel: float) -> bool:
    """Whether two score arrays agree within ``rel`` times their scale (the largest finite
    ``|value|``): scores of 1e-6 that differ by 1e-6 have changed."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    both = np.abs(np.concatenate([a64.ravel(), b64.ravel()]))
    scale = float(both[np.isfinite(both)].max(initial=0.0))
    return bool(np.all((a64 == b64) | (np.abs(a64 - b64) <= rel * scale)))


def check_input_dependence(
    runner: Any, reference: nn.Module, example: Tensor, batch: int, atol: float
) -> None:
    """The exported score must change when the input does; says whether PyTorch's does too."""
    batch = max(batch, 2)
    x1 = inputs_like(example, batch, seed=1)
    x2 = inputs_like(example, batch, seed=2)
    s1, s2 = (runner.run(["score"], {INPUT: x.numpy()})[0] for x in (x1, x2))
    if _unchanged(s1, s2, atol):
        with torch.no_grad():
            t1, t2 = (reference(x)[1].numpy() for x in (x1, x2))
        where = (
            "in PyTorch too (the model or scorer ignores its input)"
            if _unchanged(t1, t2, atol)
            else "although PyTorch's does (the exporter folded the scorer into constants)"
        )
        raise VerificationError(
            f"the exported score does not change when the input changes, {where}; refusing to "
            "write the model"
        )


__all__ = ["check_input_dependence", "check_structure", "inputs_like", "session", "verify_onnx"]
