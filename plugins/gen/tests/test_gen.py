"""GEN: the paper's formula, pytorch-ood 0.4.0 parity (up to its mean), bad keywords, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_gen import GEN

import ood_core
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference():
    return pytorch_ood_detector("gen").GEN


def _logits(seed: int, shape: tuple[int, ...], scale: float = 3.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("shape", [(64, 10), (5, 3), (2, 6, 3, 4)])
@pytest.mark.parametrize("kwargs", [{}, {"gamma": 0.5, "M": 4}, {"gamma": 2.0, "M": 50}])
def test_is_pytorch_ood_times_the_number_of_terms(shape, kwargs):
    x = _logits(sum(shape), shape)
    ours = ood_core.create_scorer("GEN", **kwargs)(x)
    theirs = _reference()(None, **kwargs).predict_logits(x)
    terms = min(kwargs.get("M") or shape[1], shape[1])
    # documented divergence: the paper sums the M terms, 0.4.0 averages them
    torch.testing.assert_close(ours, theirs * terms, rtol=1e-5, atol=1e-6)


def test_formula_written_out():
    x = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    gamma, m = 0.3, 2
    expected = []
    for row in x:
        p = sorted((row.exp() / row.exp().sum()).tolist(), reverse=True)[:m]
        expected.append(sum(v**gamma * (1 - v) ** gamma for v in p))
    got = GEN(gamma=gamma, M=m)(x)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    # uniform posteriors are the most OOD, a one-hot-like posterior the least
    assert got[1] > got[0]
    assert GEN()(torch.tensor([[40.0, 0.0, 0.0]])) < GEN()(torch.zeros(1, 3))


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(GEN, _reference())


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"M": 0}, "M"),
        ({"M": 2.5}, "M"),
        ({"M": True}, "M"),
    ],
)
def test_bad_keywords_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=f"GEN: argument '{arg}'"):
        GEN(**kwargs)


def test_masked_classes_and_registration():
    x = torch.tensor([[1.0, float("-inf"), 0.0]])
    assert torch.isfinite(GEN()(x)).all()
    info = ood_core.get_info("scorer", "GEN")
    assert info.name == "gen" and info.tasks == ("classification", "segmentation")


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
