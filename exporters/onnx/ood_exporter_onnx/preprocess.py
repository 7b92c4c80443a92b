"""In-graph preprocessing: a raw uint8 image batch in, the model's normalised float input out.

``x = resize(float(raw)) * (1 / (255 std[c])) - mean[c] / std[c]`` (that is
``(raw / 255 - mean) / std``, one per-channel affine pass), with NHWC input transposed to NCHW
first (on the uint8 bytes) and the optional resize
bilinear without antialiasing (ONNX ``Resize`` ``linear``/``half_pixel`` = ``torch`` ``bilinear``,
``align_corners=False``). :class:`Preprocess` holds the spec, builds the ONNX nodes
(:func:`prepend`) and the PyTorch reference (:class:`Preprocessed`) the graph is verified against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

from ood_exporter_onnx.convert import INPUT
from ood_exporter_onnx.errors import ExportError
from ood_exporter_onnx.options import INPUT_FORMATS

_OUT = "oodx_pre/normalised"


@dataclass(frozen=True)
class Preprocess:
    """The raw input a graph takes and how it becomes the model's input ``(C, H, W)``."""

    layout: str  # "NHWC" or "NCHW"
    channels: int
    size: tuple[int, int]  # the model's (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: bool  # True: any input size, resized in the graph to ``size``

    @classmethod
    def build(
        cls, input_format: str, mean: Any, std: Any, resize: Any, model_input: Sequence[int]
    ) -> Preprocess | None:
        """The spec for a model taking ``model_input`` (with batch), or None for a float graph."""
        if input_format == "float":
            if mean is not None or std is not None or resize is not None:
                raise ExportError(
                    "mean, std and resize describe raw-image input: give input_format "
                    "uint8-nhwc or uint8-nchw with them (--input-format)"
                )
            return None
        if len(model_input) != 4 or model_input[1] not in (1, 3):
            raise ExportError(
                f"input_format {input_format!r} needs a model taking images (N, 1 or 3, H, W), "
                f"this one takes {list(model_input)}"
            )
        c, h, w = (int(s) for s in model_input[1:])
        size = (h, w)
        if resize is not None and tuple(resize) != size:
            raise ExportError(
                f"resize {list(resize)} must be the model's input size {[h, w]}: the graph "
                "resizes any input to it (give --resize with the model's H,W)"
            )
        mean_t, std_t = _per_channel("mean", mean, c, 0.0), _per_channel("std", std, c, 1.0)
        if any(not s > 0 for s in std_t):
            raise ExportError(f"std must be > 0 per channel, got {list(std_t)}")
        layout = "NHWC" if input_format == "uint8-nhwc" else "NCHW"
        return cls(layout, c, size, mean_t, std_t, resize is not None)

    @property
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` float32 ``(1, C, 1, 1)``: ``x = float(raw) * a + b``."""
        std = np.asarray(self.std, np.float64)
        a = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, -1, 1, 1)
        b = (-np.asarray(self.mean, np.float64) / std).astype(np.float32).reshape(1, -1, 1, 1)
        return a, b

    def raw_shape(self, batch: Any = None) -> list[Any]:
        """The graph input's shape (``None``: any size)."""
        h, w = (None, None) if self.resize else self.size
        dims = [h, w, self.channels] if self.layout == "NHWC" else [self.channels, h, w]
        return [batch, *dims]

    def example(self, batch: int = 2, seed: int = 0) -> Tensor:
        """A random raw batch covering 0..255 (with resize: 1.5x / 1.25x the model's size)."""
        h, w = self.size
        if self.resize:
            h, w = (h * 3) // 2, (w * 5) // 4
        shape = (
            [batch, h, w, self.channels] if self.layout == "NHWC" else [batch, self.channels, h, w]
        )
        gen = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
        x.view(-1)[:2] = torch.tensor([0, 255], dtype=torch.uint8)
        return x

    def describe(self) -> dict[str, Any]:
        """The ``oodx.preprocess`` metadata: what raw input the graph expects, exactly."""
        return {
            "input_format": f"uint8-{self.layout.lower()}",
            "dtype": "uint8",
            "layout": self.layout,
            "channels": self.channels,
            "color": "RGB" if self.channels == 3 else "L",
            "input_size": None if self.resize else list(self.size),
            "resize": (
                {
                    "size": list(self.size),
                    "mode": "bilinear",
                    "coordinate_transformation": "half_pixel",
                    "antialias": False,
                }
                if self.resize
                else None
            ),
            "mean": list(self.mean),
            "std": list(self.std),
            "formula": "input = (resize(raw) / 255 - mean[c]) / std[c], per channel c",
        }


def _per_channel(name: str, value: Any, channels: int, default: float) -> tuple[float, ...]:
    if value is None:
        return (default,) * channels
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    except (TypeError, ValueError):
        raise ExportError(f"{name} must be numbers like 0.485,0.456,0.406, got {value!r}") from None
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or not all(np.isfinite(values)):
        raise ExportError(
            f"{name} must be {channels} finite number(s), one per channel, got {list(values)}"
        )
    return values


class Preprocessed(nn.Module):
    """PyTorch reference: the spec's preprocessing followed by ``graph`` (the model + scorer)."""

    def __init__(self, spec: Preprocess, graph: nn.Module) -> None:
        super().__init__()
        self.spec, self.graph = spec, graph
        a, b = spec.affine
        self.register_buffer("a", torch.from_numpy(a))
        self.register_buffer("b", torch.from_numpy(b))

    def normalise(self, raw: Tensor) -> Tensor:
        x = raw.to(torch.float32)
        if self.spec.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        if self.spec.resize:
            x = nn.functional.interpolate(
                x, size=self.spec.size, mode="bilinear", align_corners=False, antialias=False
            )
        return x * self.a + self.b

    def forward(self, raw: Tensor) -> Any:
        return self.graph(self.normalise(raw))


def prepend(proto: onnx.ModelProto, spec: Preprocess) -> onnx.ModelProto:
    """A copy of ``proto`` whose input ``input`` is the raw batch, preprocessed by ONNX ops."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == INPUT:
                node.input[i] = _OUT
    (old,) = [i for i in graph.input if i.name == INPUT]
    batch = old.type.tensor_type.shape.dim[0].dim_param or "batch"
    dims = [batch if d is None and k == 0 else d for k, d in enumerate(spec.raw_shape())]
    dims = [
        ("height" if k == (1 if spec.layout == "NHWC" else 2) else "width") if d is None else d
        for k, d in enumerate(dims)
    ]
    new_input = helper.make_tensor_value_info(INPUT, TensorProto.UINT8, dims)
    old.CopyFrom(new_input)
    nodes = _nodes(graph, spec)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    return model


def _nodes(graph: onnx.GraphProto, spec: Preprocess) -> list[onnx.NodeProto]:
    """uint8 ``Transpose`` (NHWC, a quarter of the bytes of float) -> ``Cast`` -> ``Resize`` ->
    one per-channel affine pass (``BatchNormalization`` with mean 0, var 1, epsilon 0)."""
    a, b = spec.affine
    c = spec.channels
    consts = {
        "oodx_pre/scale": a.reshape(c),
        "oodx_pre/shift": b.reshape(c),
        "oodx_pre/zero": np.zeros(c, np.float32),
        "oodx_pre/one": np.ones(c, np.float32),
    }
    if spec.resize:
        consts["oodx_pre/size"] = np.asarray(spec.size, np.int64)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    nodes, current = [], INPUT
    if spec.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["oodx_pre/nchw"], perm=[0, 3, 1, 2]))
        current = "oodx_pre/nchw"
    nodes.append(helper.make_node("Cast", [current], ["oodx_pre/float"], to=TensorProto.FLOAT))
    current = "oodx_pre/float"
    if spec.resize:
        nodes.append(
            helper.make_node(
                "Resize",
                [current, "", "", "oodx_pre/size"],
                ["oodx_pre/resized"],
                axes=[2, 3],
                mode="linear",
                coordinate_transformation_mode="half_pixel",
                antialias=0,
            )
        )
        current = "oodx_pre/resized"
    affine = ["oodx_pre/scale", "oodx_pre/shift", "oodx_pre/zero", "oodx_pre/one"]
    nodes.append(helper.make_node("BatchNormalization", [current, *affine], [_OUT], epsilon=0.0))
    for node in nodes:
        node.name = f"oodx_pre/{node.op_type.lower()}"
    return nodes


__all__ = ["INPUT_FORMATS", "Preprocess", "Preprocessed", "prepend"]
