"""Fit data for tests of post-hoc scorers: Gaussian class clusters and a head that separates them.

The cluster means are fixed by ``(dim, num_classes)``; samples vary with the seed, so a head
built once (:func:`cluster_head`, the nearest-mean classifier ``W = mu``, ``b = -|mu|^2 / 2``)
classifies every draw well. :func:`fit_clusters` is a ready ``ScorerCase.fit``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def cluster_means(dim: int, num_classes: int, spread: float = 3.0) -> Tensor:
    """Class means ``(C, D)`` (float64), the same for every call with these sizes."""
    g = torch.Generator().manual_seed(1000 + 31 * dim + num_classes)
    return torch.randn(num_classes, dim, generator=g, dtype=torch.float64) * spread


def cluster_samples(
    n: int, dim: int, num_classes: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``n`` samples ``(n, D)`` around :func:`cluster_means` (unit noise), labels ``arange % C``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = cluster_means(dim, num_classes)[y] + torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x.to(dtype), y


def cluster_head(dim: int, num_classes: int) -> nn.Linear:
    """The nearest-mean classifier of the clusters as an ``nn.Linear(dim, num_classes)``."""
    mu = cluster_means(dim, num_classes)
    head = nn.Linear(dim, num_classes)
    with torch.no_grad():
        head.weight.copy_(mu)
        head.bias.copy_(-(mu**2).sum(1) / 2)
    return head


def fit_clusters(scorer: Any, spec: Any, n: int = 64) -> None:
    """``ScorerCase.fit``: fit ``scorer`` on ``n`` cluster samples of the spec's sizes."""
    x, y = cluster_samples(n, spec.dim, spec.num_classes, seed=spec.seed)
    scorer.fit(x, y)


def onnx_scores(scorer: nn.Module, example: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    """Scores of ``scorer`` exported to ONNX (dynamo, dynamic batch, traced on ``example``) and
    run in onnxruntime on each of ``inputs``: the fitted state travels in the graph."""
    import io

    import onnxruntime
    from torch.export import Dim

    buffer = io.BytesIO()
    with torch.no_grad():
        program = torch.onnx.export(
            scorer.eval(),
            (example,),
            dynamo=True,
            input_names=["features"],
            output_names=["score"],
            dynamic_shapes=({0: Dim("batch", min=1, max=1 << 20)},),
            verbose=False,
        )
    program.save(buffer)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(session.run(None, {"features": x.numpy()})[0]) for x in inputs]


def assert_onnx_matches(
    scorer: nn.Module, x: Tensor, rtol: float = 1e-4, atol: float = 1e-4
) -> None:
    """The ONNX export of fitted ``scorer`` (traced on ``x[:3]``) scores ``x[:1]`` and ``x[3:]``
    as the module does: dynamic batch, fitted state in the graph."""
    probes = [x[:1], x[3:]]
    for got, probe in zip(onnx_scores(scorer, x[:3], probes), probes):
        expected = scorer(probe)
        assert torch.allclose(got, expected, rtol=rtol, atol=atol), (got, expected)


__all__ = [
    "assert_onnx_matches",
    "cluster_head",
    "cluster_means",
    "cluster_samples",
    "fit_clusters",
    "onnx_scores",
]


def tiny_classifier(
    activation: type[nn.Module] = nn.Tanh, dropout: float = 0.2, seed: int = 0
) -> nn.Module:
    """A seeded MLP ``8 -> 16 -> 4`` with dropout: the model of the kit cases of scorers that
    read inputs through a model (ODIN, GradNorm, MC dropout, ...)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), activation(), nn.Dropout(dropout), nn.Linear(16, 4))
