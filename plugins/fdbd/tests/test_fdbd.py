"""fDBD: pytorch-ood 0.4.0 parity, the formula, ONNX, errors, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_fdbd import fDBD

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.posthoc import cluster_head, cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _reference():
    return pytorch_ood_detector("fdbd").fDBD


def _data(seed: int):
    x, _ = cluster_samples(300, DIM, CLASSES, seed=seed)
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 100)[0], torch.randn(40, DIM)])
    return x, test


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytorch_ood(seed):
    x, test = _data(seed)
    head = cluster_head(DIM, CLASSES)
    ours = ood_core.create_scorer("fDBD", head=head).fit(x)
    with torch.no_grad():
        expected = _reference()(None, head).fit_features(x).predict_features(test)
    torch.testing.assert_close(ours(test), expected, rtol=1e-5, atol=1e-6)


def test_formula_written_out():
    head = torch.nn.Linear(2, 3)
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # mean (1, 1)
    z = torch.tensor([[3.0, -1.0]])
    w, logits = head.weight.detach(), head(z).detach()[0]
    k = int(logits.argmax())
    terms = [abs(logits[k] - logits[c]) / (w[k] - w[c]).norm() for c in range(3) if c != k]
    expected = -sum(terms) / (2 * (z[0] - torch.tensor([1.0, 1.0])).norm())
    assert fDBD(head=head).fit(x)(z).item() == pytest.approx(float(expected), rel=1e-5)


def test_labels_below_zero_are_dropped_and_streaming_equals_one_tensor():
    x, test = _data(3)
    y = torch.zeros(300, dtype=torch.long)
    y[:100] = -1
    head = cluster_head(DIM, CLASSES)
    a = fDBD(head=head).fit([(x[i : i + 64], y[i : i + 64]) for i in range(0, 300, 64)])
    torch.testing.assert_close(a(test), fDBD(head=head).fit(x[100:])(test))


def test_exports_to_onnx_with_its_fitted_state():
    x, test = _data(4)
    scorer = fDBD(head=cluster_head(DIM, CLASSES)).fit(x)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-6)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(fDBD, _reference(), skip=("encoder", "head"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: fDBD(torch.nn.Identity(), h), "fDBD: argument 'encoder' must be None"),
        (lambda h: fDBD(), "fDBD: argument 'head'"),
        (lambda h: fDBD(head=torch.nn.Sequential(h)), "fDBD: argument 'head' must be an nn.Linear"),
        (lambda h: fDBD(head=torch.nn.Linear(DIM, 1)), "at least 2 classes"),
        (lambda h: fDBD(head=h).fit(torch.randn(5, 3)), r"fDBD.fit: argument 'x'.*\(B, 32\)"),
        (lambda h: fDBD(head=h).fit(torch.full((5, DIM), float("nan"))), "NaN"),
        (lambda h: fDBD(head=h).fit(torch.randn(5, DIM))(torch.randn(2, 3)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES))


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="fDBD is not fitted"):
        fDBD(head=cluster_head(DIM, CLASSES))(torch.randn(2, DIM))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (16,)
