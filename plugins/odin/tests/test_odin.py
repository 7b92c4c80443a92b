"""ODIN against pytorch-ood 0.4.0 on the same model and inputs, and its error cases."""

from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).parents[1] / "README.md"


def _conv_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)
    ).eval()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"eps": 0.01, "temperature": 1.0},
        {"eps": 0.05, "temperature": 10.0, "norm_std": [0.2, 0.3, 0.5]},
    ],
)
def test_matches_pytorch_ood_040(kwargs):
    Reference = pytorch_ood_detector("odin").ODIN
    model = _conv_model()
    x = torch.randn(7, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = ood_core.create_scorer("ODIN", model=model, **kwargs)(x)
    ref = Reference(model, **kwargs).predict(x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    print(f"ODIN vs 0.4.0 {kwargs}: max |diff| {float((ours - ref).abs().max()):.2e}")


def test_perturbation_raises_the_max_softmax_and_is_per_sample():
    model = _conv_model()
    x = torch.randn(9, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    scorer = ood_core.create_scorer("odin", model=model, eps=0.02, temperature=1.0)
    plain = ood_core.create_scorer("odin", model=model, eps=0.0, temperature=1.0)
    assert bool((scorer(x) <= plain(x) + 1e-7).all())  # the step lowers the loss of y_hat
    torch.testing.assert_close(scorer(x[2:5]), scorer(x)[2:5], rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"eps": -0.1}, "eps"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"norm_std": [0.0, 1.0, 1.0]}, "norm_std"),
        ({"criterion": 3}, "criterion"),
        ({"model": "resnet"}, "model"),
    ],
)
def test_bad_keywords(kwargs, arg):
    with pytest.raises(ValueError, match=f"ODIN.*'{arg}'"):
        ood_core.create_scorer("odin", **{"model": _conv_model(), **kwargs})


def test_norm_std_of_the_wrong_length():
    scorer = ood_core.create_scorer("odin", model=_conv_model(), norm_std=[0.5, 0.5])
    with pytest.raises(ValueError, match="'norm_std'.*3 values"):
        scorer(torch.randn(2, 3, 8, 8))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
