"""The Monte-Carlo dropout scorer passes the oodx conformance kit (seeded: reproducible)."""

import torch
from torch import nn

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.posthoc import tiny_classifier


def _mlp() -> nn.Module:
    return tiny_classifier(nn.ReLU, 0.3)


class PerPixel(nn.Module):
    """A 1x1-conv segmenter that also takes (B, D) inputs (as 1x1 images): the kit's dtype
    check feeds classification-shaped inputs to every case."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.Dropout2d(0.3), nn.Conv2d(8, 4, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 2
        out = self.net(x[..., None, None] if flat else x)
        return out[..., 0, 0] if flat else out


def _per_pixel() -> nn.Module:
    return PerPixel()


CASES = [
    ScorerCase("mc-dropout", {"model": _mlp(), "samples": 5, "seed": 0}, tasks=("classification",)),
    ScorerCase(
        "MCD",
        {"model": _mlp(), "samples": 4, "mode": "mean", "seed": 3},
        tasks=("classification",),
        id="mcd-mean",
    ),
    ScorerCase(
        "mc-dropout",
        {"model": _per_pixel(), "samples": 3, "seed": 1},
        tasks=("segmentation",),
        id="mc-dropout-segmentation",
    ),
]


@parametrize_with_checks(CASES)
def test_mc_dropout_conformance(case, check):
    check(case)
