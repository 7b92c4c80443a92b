"""SHE: pytorch-ood 0.4.0 parity, the patterns, ONNX, errors, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_she import SHE

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.posthoc import cluster_head, cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _reference():
    return pytorch_ood_detector("she").SHE


def _data(seed: int):
    x, y = cluster_samples(300, DIM, CLASSES, seed=seed)
    y[::11] = -1
    y[1::13] = (y[1::13] + 1) % CLASSES  # some wrong labels: misclassified rows are left out
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 100)[0], torch.randn(40, DIM)])
    return x, y, test


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytorch_ood(seed):
    x, y, test = _data(seed)
    head = cluster_head(DIM, CLASSES)
    ours = ood_core.create_scorer("SHE", head=head).fit(x, y)
    with torch.no_grad():
        theirs = _reference()(None, head).fit_features(x, y)
        expected = theirs.predict_features(test)
    torch.testing.assert_close(ours.patterns, theirs.patterns, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours(test), expected, rtol=1e-5, atol=1e-4)


def test_patterns_are_means_of_correctly_classified_rows():
    x, y, _ = _data(3)
    head = cluster_head(DIM, CLASSES)
    scorer = SHE(head=head).fit([(x[i : i + 50], y[i : i + 50]) for i in range(0, 300, 50)])
    correct = head(x).argmax(1) == y
    for c in range(CLASSES):
        torch.testing.assert_close(
            scorer.patterns[c], x[correct & (y == c)].double().mean(0).float()
        )
    z = x[:3]
    expected = -(z * scorer.patterns[head(z).argmax(1)]).sum(1)
    torch.testing.assert_close(scorer(z), expected.detach())


def test_exports_to_onnx_with_its_fitted_state():
    x, y, test = _data(4)
    scorer = SHE(head=cluster_head(DIM, CLASSES)).fit(x, y)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-4)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(SHE, _reference(), skip=("encoder", "head"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h, x, y: SHE(torch.nn.Identity(), h), "SHE: argument 'encoder' must be None"),
        (lambda h, x, y: SHE(), "SHE: argument 'head'"),
        (lambda h, x, y: SHE(head=h).fit(x), "SHE.fit: argument 'y' is required"),
        (
            lambda h, x, y: SHE(head=h).fit(x, torch.zeros_like(y)),
            r"none for class\(es\) \[1, 2, 3, 4\]",
        ),
        (lambda h, x, y: SHE(head=h).fit(x, y + 1), "labels below the head's 5 classes"),
        (lambda h, x, y: SHE(head=h).fit(x[:, :3], y), "SHE.fit"),
        (lambda h, x, y: SHE(head=h).fit(x * float("nan"), y), "NaN"),
        (lambda h, x, y: SHE(head=h).fit(x, y)(torch.randn(2, 3)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    x, y = cluster_samples(50, DIM, CLASSES)
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES), x, y)


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="SHE is not fitted"):
        SHE(head=cluster_head(DIM, CLASSES))(torch.randn(2, DIM))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (16,)
