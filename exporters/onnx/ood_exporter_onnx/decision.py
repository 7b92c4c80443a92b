"""Stage *decide*: the calibrated ``is_ood`` output, ``score > threshold or not finite(score)``.

The threshold is a calibration score (a float32 value), so the graph's float32 comparison and
``ood_runtime.flag_ood`` on the float32 scores agree exactly; a NaN or +-inf score is OOD.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor

from ood_exporter_onnx.convert import INPUT
from ood_exporter_onnx.errors import VerificationError
from ood_exporter_onnx.verify import inputs_like, session
from ood_runtime.model import flag_ood

IS_OOD = "is_ood"


def append_is_ood(proto: onnx.ModelProto, threshold: float) -> None:
    """Add the bool output ``is_ood`` (same shape as ``score``) to ``proto`` in place."""
    graph = proto.graph
    (score,) = [o for o in graph.output if o.name == "score"]
    dtype = score.type.tensor_type.elem_type
    t = np.asarray(threshold, dtype=onnx.helper.tensor_dtype_to_np_dtype(dtype))
    graph.initializer.append(numpy_helper.from_array(t, "oodx_decide/threshold"))
    graph.node.extend(
        [
            helper.make_node(
                "Greater",
                ["score", "oodx_decide/threshold"],
                ["oodx_decide/above"],
                name="oodx_decide/greater",
            ),
            helper.make_node("IsNaN", ["score"], ["oodx_decide/nan"], name="oodx_decide/isnan"),
            helper.make_node("IsInf", ["score"], ["oodx_decide/inf"], name="oodx_decide/isinf"),
            helper.make_node(
                "Or",
                ["oodx_decide/nan", "oodx_decide/inf"],
                ["oodx_decide/nonfinite"],
                name="oodx_decide/or_nonfinite",
            ),
            helper.make_node(
                "Or",
                ["oodx_decide/above", "oodx_decide/nonfinite"],
                [IS_OOD],
                name="oodx_decide/is_ood",
            ),
        ]
    )
    dims = [d.dim_param or d.dim_value for d in score.type.tensor_type.shape.dim]
    graph.output.append(helper.make_tensor_value_info(IS_OOD, TensorProto.BOOL, dims))


def check_is_ood(path: Path, x: Tensor, threshold: float, batch: int) -> None:
    """The written graph's ``is_ood`` equals ``flag_ood(score, threshold)`` on a batch, and its
    decision nodes flag NaN and +-inf scores (run on the extracted score -> is_ood subgraph)."""
    runner = session(path)
    sample = inputs_like(x, max(batch, 2), seed=11).numpy()
    score, flagged = runner.run(["score", IS_OOD], {INPUT: sample})
    if not np.array_equal(flagged, flag_ood(score, threshold)):
        raise VerificationError("the graph's is_ood differs from score > threshold")
    t = np.float32(threshold)
    probe = np.array([np.nan, np.inf, -np.inf, t, np.nextafter(t, np.float32(np.inf))], np.float32)
    got = decide(probe, threshold)
    if not np.array_equal(got, [True, True, True, False, True]):
        raise VerificationError(f"the is_ood nodes are not NaN-safe: {got.tolist()}")


def decide(score: np.ndarray, threshold: float) -> np.ndarray:
    """``is_ood`` computed by the decision nodes alone (a one-input graph) on ``score``."""
    value = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"])
    graph = helper.make_graph([], "oodx_decide", [value], [value])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    append_is_ood(model, threshold)
    model.graph.output.remove(model.graph.output[0])
    return session(model.SerializeToString()).run([IS_OOD], {"score": score})[0]


__all__ = ["IS_OOD", "append_is_ood", "check_is_ood", "decide"]
