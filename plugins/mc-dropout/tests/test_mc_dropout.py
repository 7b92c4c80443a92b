"""Monte-Carlo dropout against pytorch-ood 0.4.0 on the same model, inputs and random draws."""

from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).parents[1] / "README.md"


def _model() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 5)
    ).eval()


@pytest.mark.parametrize("mode", ["var", "mean"])
def test_matches_pytorch_ood_040(mode):
    model = _model()
    x = torch.randn(11, 6, generator=torch.Generator().manual_seed(5))
    ours = ood_core.create_scorer("MCD", model=model, samples=7, mode=mode, seed=123)(x)
    torch.manual_seed(123)  # 0.4.0 draws from the global RNG: same draws, same order
    ref = pytorch_ood_detector("mcd").MCD(model, samples=7, mode=mode).predict(x)
    print(f"MCD {mode} vs 0.4.0: max |diff| {float((ours - ref).abs().max()):.2e}")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    assert not model.training


def test_seed_reproduces_and_leaves_the_global_rng_alone():
    model = _model()
    x = torch.randn(5, 6)
    scorer = ood_core.create_scorer("mc-dropout", model=model, samples=4, seed=7)
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    first = scorer(x)
    assert torch.equal(torch.rand(3), before)  # scoring drew nothing from the global RNG
    assert torch.equal(scorer(x), first)
    unseeded = ood_core.create_scorer("mc-dropout", model=model, samples=4)
    assert not torch.equal(unseeded(x), unseeded(x))  # dropout really is on


def test_without_dropout_the_variance_is_zero():
    model = nn.Sequential(nn.Linear(6, 5))
    scores = ood_core.create_scorer("mc-dropout", model=model, samples=3)(torch.randn(4, 6))
    assert torch.equal(scores, torch.zeros(4))


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"samples": 0}, "samples"),
        ({"samples": 1}, "samples"),
        ({"mode": "std"}, "mode"),
        ({"batch_norm": 1}, "batch_norm"),
        ({"seed": 1.5}, "seed"),
        ({"model": None}, "model"),
    ],
)
def test_bad_keywords(kwargs, arg):
    with pytest.raises(ValueError, match=f"MCD.*'{arg}'"):
        ood_core.create_scorer("mc-dropout", **{"model": _model(), **kwargs})


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (4,)
