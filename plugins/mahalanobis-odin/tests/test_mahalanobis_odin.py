"""Mahalanobis-ODIN against pytorch-ood 0.4.0 on the same encoder, fit data and inputs."""

from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).parents[1] / "README.md"


def _data():
    torch.manual_seed(3)
    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 6)).eval()
    g = torch.Generator().manual_seed(4)
    x_fit = torch.randn(120, 3, 6, 6, generator=g)
    y_fit = torch.arange(120) % 3
    with torch.no_grad():
        z_fit = encoder(x_fit)
    return encoder, z_fit, y_fit, torch.randn(9, 3, 6, 6, generator=g)


@pytest.mark.parametrize(
    "kwargs", [{"eps": 0.0}, {"eps": 0.01}, {"eps": 0.05, "norm_std": [0.5, 1.0, 2.0]}]
)
def test_matches_pytorch_ood_040_up_to_its_scale(kwargs):
    """0.4.0 inverts the scatter matrix N S (+1e-6 I) and halves: its score is ours / (2 N)."""
    encoder, z, y, x = _data()
    ours = ood_core.create_scorer("MahalanobisODIN", encoder=encoder, **kwargs).fit(z, y)(x)
    assert all(p.grad is None for p in encoder.parameters())  # 0.4.0 leaves .grad; we do not
    ref = pytorch_ood_detector("mahalanobis").MahalanobisODIN(encoder, **kwargs)
    ref = ref.fit_features(z, y).predict(x)
    scaled = ours / (2 * len(z))
    print(
        f"MahalanobisODIN vs 0.4.0 {kwargs}: max rel diff {float(((scaled - ref) / ref).abs().max()):.2e}"
    )
    torch.testing.assert_close(scaled, ref, rtol=1e-4, atol=1e-7)


def test_step_lowers_the_distance_and_is_per_sample():
    encoder, z, y, x = _data()
    plain = ood_core.create_scorer("mahalanobis-odin", encoder=encoder, eps=0.0).fit(z, y)
    moved = ood_core.create_scorer("mahalanobis-odin", encoder=encoder, eps=0.01).fit(z, y)
    assert bool((moved(x) < plain(x)).all())
    torch.testing.assert_close(moved(x[2:5]), moved(x)[2:5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        plain(x), ood_core.create_scorer("mahalanobis").fit(z, y)(encoder(x))
    )


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"eps": -1.0}, "eps"),
        ({"norm_std": [0.0, 1.0, 1.0]}, "norm_std"),
        ({"encoder": None}, "encoder"),
    ],
)
def test_bad_keywords(kwargs, arg):
    encoder = _data()[0]
    with pytest.raises(ValueError, match=f"MahalanobisODIN.*'{arg}'"):
        ood_core.create_scorer("mahalanobis-odin", **{"encoder": encoder, **kwargs})


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (4,)
