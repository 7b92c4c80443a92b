"""Temperature scaling: the NLL optimum, pytorch-ood 0.4.0's score formula, errors, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_temperature_scaling import TemperatureScaling
from scipy.optimize import minimize_scalar
from torch.nn import functional as F

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference():
    return pytorch_ood_detector("tscaling").TemperatureScaling


def _data(seed: int, n: int = 600, c: int = 10, scale: float = 2.5):
    """Logits of a classifier that is right most of the time, over-confident by ``scale``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    x = torch.randn(n, c, generator=g) * 2
    x[torch.arange(n), y] += 3
    return x * scale, y


def _nll(x: torch.Tensor, y: torch.Tensor, t: float) -> float:
    return F.cross_entropy(x.double() / t, y).item()


@pytest.mark.parametrize("seed, scale", [(0, 2.5), (1, 0.5), (2, 1.0)])
def test_temperature_is_the_nll_minimum(seed, scale):
    x, y = _data(seed, scale=scale)
    ours = ood_core.create_scorer("TemperatureScaling").fit(x, y)
    best = minimize_scalar(
        lambda t: _nll(x, y, t), bounds=(1e-3, 1e3), method="bounded", options={"xatol": 1e-10}
    )
    assert ours.t.item() == pytest.approx(best.x, rel=1e-6)
    # documented divergence: 0.4.0 (50 L-BFGS steps of size 0.01) stops short of the minimum
    theirs = _reference()(None).fit_logits(x, y)
    assert _nll(x, y, ours.t.item()) <= _nll(x, y, theirs.t.item()) + 1e-12
    if abs(best.x - 1) > 0.5:
        assert _nll(x, y, theirs.t.item()) > _nll(x, y, ours.t.item()) + 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_score_matches_pytorch_ood_at_its_temperature(seed):
    x, y = _data(seed)
    theirs = _reference()(None).fit_logits(x, y)
    ours = TemperatureScaling().fit(x, y)
    ours.t.fill_(theirs.t.item())
    probe = _data(seed + 5, n=100)[0] * 1.3
    torch.testing.assert_close(ours(probe), theirs.predict_logits(probe), rtol=1e-5, atol=1e-6)
    t = ours.t.item()
    expected = -(probe.double() / t).softmax(1).amax(1)
    torch.testing.assert_close(ours(probe.double()), expected)


def test_ood_rows_are_left_out_and_streaming_equals_one_tensor():
    x, y = _data(3)
    base = TemperatureScaling().fit(x, y)
    noisy = torch.cat([x, torch.randn(50, 10) * 30])
    with_ood = TemperatureScaling().fit(noisy, torch.cat([y, torch.full((50,), -1)]))
    streamed = TemperatureScaling().fit(zip(x.split(64), y.split(64)))
    assert with_ood.t.item() == base.t.item() == streamed.t.item()


def test_temperature_is_a_detached_buffer():
    scorer = TemperatureScaling().fit(*_data(0))
    assert list(scorer.parameters()) == [] and "t" in dict(scorer.named_buffers())
    assert not scorer.t.requires_grad
    assert set(scorer.state_dict()) == {"t", "fitted"}


@pytest.mark.parametrize(
    "sign, words, bound", [(1.0, "perfectly", 1e-3), (-1.0, "no better than chance", 1e3)]
)
def test_nll_without_an_inner_minimum_warns_and_clamps(sign, words, bound):
    y = torch.arange(40) % 4
    x = F.one_hot(y, 4).float() * 10 * sign  # labels always the top (or the bottom) logit
    with pytest.warns(UserWarning, match=f"no minimum.*{words}"):
        scorer = TemperatureScaling().fit(x, y)
    assert scorer.t.item() == pytest.approx(bound)
    assert torch.isfinite(scorer(x)).all()


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(TemperatureScaling, _reference())


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: TemperatureScaling()(torch.randn(2, 3)), NotFittedError, "is not fitted"),
        (lambda: TemperatureScaling().fit(torch.randn(4, 3)), ValueError, "'y' is required"),
        (
            lambda: TemperatureScaling().fit(torch.randn(3, 2), torch.full((3,), -1)),
            ValueError,
            "argument 'y' marks every sample OOD",
        ),
        (
            lambda: TemperatureScaling().fit(torch.randn(3, 2), torch.tensor([0, 1, 2])),
            ValueError,
            r"TemperatureScaling.fit: argument 'y' must be labels below 2",
        ),
        (
            lambda: TemperatureScaling().fit(
                torch.tensor([[0.0, float("nan")]]), torch.tensor([0])
            ),
            ValueError,
            "argument 'x'.*NaN",
        ),
        (
            lambda: TemperatureScaling().fit(torch.randn(3, 2, 4, 4), torch.tensor([0, 1, 0])),
            ValueError,
            r"argument 'x' must be logits \(N, C\)",
        ),
    ],
)
def test_errors_name_the_argument(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (3,)
