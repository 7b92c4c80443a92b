"""The Gram plugin passes the oodx conformance kit on two layers' feature maps (a tuple)."""

from __future__ import annotations

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import cluster_head


def two_layers(spec):
    """``(B, 3, H, W)`` and ``(B, D, 3, 3)`` non-negative maps: the forward argument."""
    g = torch.Generator().manual_seed(spec.seed)
    first = torch.rand(spec.batch, 3, *spec.spatial, generator=g) * 2
    last = torch.rand(spec.batch, spec.dim, 3, 3, generator=g) * 2
    return tuple(t.to(device=spec.device, dtype=spec.dtype) for t in (first, last))


def fit_layers(scorer, spec, n=48):
    scorer.fit(two_layers(spec.replace(batch=n)), torch.arange(n) % spec.num_classes)


CASES = [
    ScorerCase("gram", {"head": cluster_head(8, 4)}, fit=fit_layers, make_inputs=two_layers),
    ScorerCase(
        "gram",
        {"head": cluster_head(8, 4), "num_poles_list": [1, 4], "validation_fraction": 0.25},
        fit=fit_layers,
        make_inputs=two_layers,
        id="gram-poles",
    ),
]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
