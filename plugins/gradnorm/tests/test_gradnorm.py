"""GradNorm against pytorch-ood 0.4.0 and against the closed form for a linear last layer."""

from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).parents[1] / "README.md"


def _model() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5)
    ).eval()


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"temperature": 3.0, "micro_batch_size": 2}, {"param_filter": lambda n: n == "4.weight"}],
)
def test_matches_pytorch_ood_040(kwargs):
    model = _model()
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ours = ood_core.create_scorer("GradNorm", model=model, **kwargs)(x)
    ref = pytorch_ood_detector("gradnorm").GradNorm(model, **kwargs).predict(x)
    print(
        f"GradNorm vs 0.4.0 {sorted(kwargs)}: max rel diff {float(((ours - ref) / ref).abs().max()):.2e}"
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_last_layer_closed_form_and_batch_independence():
    """For logits W h + b: dL/dW = (softmax(z / T) - u) h^T / T, so ||.||_1 = |p - u|_1 |h|_1 / T."""
    torch.manual_seed(4)
    body, fc = nn.Sequential(nn.Linear(6, 10), nn.ReLU()), nn.Linear(10, 3)
    model = nn.Sequential(body, fc)
    x = torch.randn(9, 6)
    scorer = ood_core.create_scorer(
        "gradnorm", model=model, temperature=2.0, param_filter=lambda n: n == "1.weight"
    )
    h = body(x).detach()
    p = (fc(h) / 2.0).softmax(1)
    expected = -((p - 1 / 3).abs().sum(1) * h.abs().sum(1) / 2.0)
    torch.testing.assert_close(scorer(x), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scorer(x[3:6]), scorer(x)[3:6], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"temperature": 0}, "temperature"),
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"param_filter": "fc.weight"}, "param_filter"),
        ({"model": None}, "model"),
    ],
)
def test_bad_keywords(kwargs, arg):
    with pytest.raises(ValueError, match=f"GradNorm.*'{arg}'"):
        ood_core.create_scorer("gradnorm", **{"model": _model(), **kwargs})


def test_filter_selecting_nothing():
    scorer = ood_core.create_scorer("gradnorm", model=_model(), param_filter=lambda n: False)
    with pytest.raises(ValueError, match="GradNorm.*'param_filter'"):
        scorer(torch.randn(2, 3, 8, 8))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (4,)
