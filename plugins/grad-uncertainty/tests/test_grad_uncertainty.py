"""GradUncertainty against pytorch-ood 0.4.0 and the closed form for a linear last layer."""

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
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 4)).eval()


@pytest.mark.parametrize("kwargs", [{}, {"param_filter": lambda n: n.startswith("3.")}])
def test_matches_pytorch_ood_040(kwargs):
    model = _model()
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(3))
    ours = ood_core.create_scorer("GradUncertainty", model=model, **kwargs)(x)
    ref = pytorch_ood_detector("graduncertainty").GradUncertainty(model, **kwargs).predict(x)
    print(f"GradUncertainty vs 0.4.0: max rel diff {float(((ours - ref) / ref).abs().max()):.2e}")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_last_layer_closed_form_and_batch_independence():
    """For logits W h + b and L = -sum_c log p_c: dL/dW = (C p - 1) h^T, dL/db = C p - 1."""
    torch.manual_seed(4)
    body, fc = nn.Sequential(nn.Linear(6, 10), nn.ReLU()), nn.Linear(10, 3)
    x = torch.randn(9, 6)
    scorer = ood_core.create_scorer(
        "grad-uncertainty", model=nn.Sequential(body, fc), param_filter=lambda n: n[0] == "1"
    )
    h = body(x).detach()
    r = 3 * fc(h).softmax(1) - 1
    expected = -((r * r).sum(1) * ((h * h).sum(1) + 1))
    torch.testing.assert_close(scorer(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scorer(x[3:6]), scorer(x)[3:6], rtol=1e-6, atol=1e-8)


def test_saturated_softmax_stays_finite():
    """0.4.0's BCE clamps log(0) to -100; log_softmax keeps the exact, finite value."""
    model = nn.Sequential(nn.Linear(2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[300.0, 0], [0, 0], [-300.0, 0]]))
    scores = ood_core.create_scorer("grad-uncertainty", model=model)(torch.ones(2, 2))
    assert bool(torch.isfinite(scores).all())


@pytest.mark.parametrize(
    "kwargs, arg", [({"param_filter": 1}, "param_filter"), ({"model": 3}, "model")]
)
def test_bad_keywords(kwargs, arg):
    with pytest.raises(ValueError, match=f"GradUncertainty.*'{arg}'"):
        ood_core.create_scorer("grad-uncertainty", **{"model": _model(), **kwargs})


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (4,)
