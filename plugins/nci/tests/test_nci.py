"""NCI: pytorch-ood 0.4.0 parity, the formula, ONNX, errors, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_nci import NCI

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.posthoc import cluster_head, cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _reference():
    return pytorch_ood_detector("nci").NCI


def _data(seed: int):
    x, _ = cluster_samples(300, DIM, CLASSES, seed=seed)
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 100)[0], torch.randn(40, DIM)])
    return x, test


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.5])
def test_matches_pytorch_ood(seed, alpha):
    x, test = _data(seed)
    head = cluster_head(DIM, CLASSES)
    ours = ood_core.create_scorer("NCI", head=head, alpha=alpha).fit(x)
    with torch.no_grad():
        expected = _reference()(None, head, alpha=alpha).fit_features(x).predict_features(test)
    torch.testing.assert_close(ours(test), expected, rtol=1e-5, atol=1e-5)


def test_formula_written_out_and_a_feature_at_the_mean_is_finite():
    head = torch.nn.Linear(2, 3)
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # mean (1, 1)
    h = torch.tensor([[3.0, -1.0]])
    k = int(head(h).argmax())
    c = h[0] - torch.tensor([1.0, 1.0])
    expected = -(c @ head.weight[k].detach()) / c.norm() - 0.1 * h.abs().sum()
    scorer = NCI(head=head, alpha=0.1).fit(x)
    assert scorer(h).item() == pytest.approx(float(expected), rel=1e-5)
    assert torch.isfinite(NCI(head=head).fit(x)(torch.tensor([[1.0, 1.0]]))).all()


def test_exports_to_onnx_with_its_fitted_state():
    x, test = _data(4)
    scorer = NCI(head=cluster_head(DIM, CLASSES), alpha=0.01).fit(x)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-5)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(NCI, _reference(), skip=("encoder", "head"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: NCI(torch.nn.Identity(), h), "NCI: argument 'encoder' must be None"),
        (lambda h: NCI(), "NCI: argument 'head'"),
        (lambda h: NCI(head=h, alpha=-0.1), "NCI: argument 'alpha'"),
        (lambda h: NCI(head=h, alpha=float("nan")), "NCI: argument 'alpha'"),
        (lambda h: NCI(head=torch.nn.ReLU()), "NCI: argument 'head' must be an nn.Linear"),
        (lambda h: NCI(head=h).fit(torch.randn(5, 3)), r"NCI.fit: argument 'x'.*\(B, 32\)"),
        (lambda h: NCI(head=h).fit(torch.full((5, DIM), float("nan"))), "NaN"),
        (lambda h: NCI(head=h).fit(torch.randn(5, DIM))(torch.randn(2, 3)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES))


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="NCI is not fitted"):
        NCI(head=cluster_head(DIM, CLASSES))(torch.randn(2, DIM))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (16,)
