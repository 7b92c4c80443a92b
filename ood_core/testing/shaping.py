"""Test helpers of the activation-shaping scorers: a torchvision-style CNN and its ONNX check.

:class:`TinyNet` is laid out as torchvision's classifiers (``features`` -> ``avgpool`` ->
``flatten`` -> ``fc``), so ``ood_core.tap(net, feature_maps="features")`` gives the last
feature map before pooling and ``net.fc`` is the head. :func:`assert_tapped_onnx_matches`
exports the tapped model followed by a scorer (``x -> (logits, score)``) to ONNX and compares
onnxruntime with PyTorch at two batch sizes.
"""

from __future__ import annotations

import io

import torch
from torch import Tensor, nn


class TinyNet(nn.Module):
    """A small CNN classifier in torchvision's layout: ``features``, ``avgpool``, ``fc``."""

    def __init__(self, channels: int = 16, num_classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))

    def head_on_maps(self, maps: Tensor) -> Tensor:
        """The part after the feature maps (pytorch-ood 0.4.0's ``head`` takes the maps)."""
        return self.fc(torch.flatten(self.avgpool(maps), 1))


def images(n: int, seed: int = 0, size: int = 8) -> Tensor:
    """``n`` random images ``(n, 3, size, size)``."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tapped_outputs(net: nn.Module, n: int, seed: int) -> dict[str, Tensor]:
    """``{"logits", "feature_maps"}`` of ``net`` tapped at ``features`` on :func:`images`."""
    from ood_core.outputs import tap

    with torch.no_grad():
        return tap(net, feature_maps="features")(images(n, seed))


class _TappedScore(nn.Module):
    def __init__(self, tapped: nn.Module, scorer: nn.Module, reads: str) -> None:
        super().__init__()
        self.tapped, self.scorer, self.reads = tapped, scorer, reads

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.tapped(x)
        return out["logits"], self.scorer(out[self.reads])


def assert_tapped_onnx_matches(
    tapped: nn.Module, scorer: nn.Module, x: Tensor, reads: str = "feature_maps", tol: float = 1e-4
) -> None:
    """``x -> (tapped(x)["logits"], scorer(tapped(x)[reads]))`` exported to ONNX (dynamic batch,
    traced on ``x[:2]``) equals PyTorch in onnxruntime on ``x[:1]`` and ``x[2:]``."""
    import onnxruntime
    from torch.export import Dim

    graph = _TappedScore(tapped, scorer, reads).eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            (x[:2],),
            dynamo=True,
            input_names=["input"],
            output_names=["output", "score"],
            dynamic_shapes=({0: Dim("batch", min=1, max=1 << 16)},),
            verbose=False,
        )
    program.save(buffer)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for probe in (x[:1], x[2:]):
        got = session.run(None, {"input": probe.numpy()})
        with torch.no_grad():
            expected = graph(probe)
        for name, a, b in zip(("output", "score"), got, expected):
            assert torch.allclose(torch.from_numpy(a), b, rtol=tol, atol=tol), (name, a, b)


__all__ = ["TinyNet", "assert_tapped_onnx_matches", "images", "tapped_outputs"]
