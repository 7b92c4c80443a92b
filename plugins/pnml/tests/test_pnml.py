"""pNML: pytorch-ood 0.4.0 parity, the formula, the singular Gram matrix, ONNX, errors, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_pnml import PNML

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.statistics import SingularCovarianceWarning
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.posthoc import cluster_means, cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _reference():
    return pytorch_ood_detector("pnml").PNML


def _head() -> torch.nn.Linear:
    """Unit class directions times 8: the head sees L2-normalised features."""
    mu = cluster_means(DIM, CLASSES)
    head = torch.nn.Linear(DIM, CLASSES)
    with torch.no_grad():
        head.weight.copy_(mu / mu.norm(dim=1, keepdim=True) * 8)
        head.bias.zero_()
    return head


def _data(seed: int, n: int = 300):
    x, y = cluster_samples(n, DIM, CLASSES, seed=seed)
    y[::9] = -1
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 100)[0], torch.randn(40, DIM)])
    return x, y, test


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n", [300, 20])
def test_matches_pytorch_ood(seed, n):
    x, y, test = _data(seed, n)
    head = _head()
    with pytest.warns(SingularCovarianceWarning) if n < DIM else _no_warning():
        ours = ood_core.create_scorer("PNML", head=head).fit(x, y)
    with torch.no_grad():
        expected = _reference()(None, head).fit_features(x, y).predict_features(test)
    # scores lie in [0, 1]: compared absolutely (0.4.0 takes the pseudo-inverse in float32)
    torch.testing.assert_close(ours(test), expected, rtol=0, atol=1e-5)
    assert 0 <= float(ours(test).min()) and float(ours(test).max()) <= 1


def _no_warning():
    import contextlib
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("error", SingularCovarianceWarning)
    return stack


def test_formula_written_out_and_streaming():
    x, y, test = _data(2)
    head = _head()
    scorer = PNML(head=head).fit([(x[i : i + 64], y[i : i + 64]) for i in range(0, 300, 64)])
    ids = x[y >= 0].double()
    ids = ids / ids.norm(dim=1, keepdim=True)
    proj = torch.linalg.pinv(ids.T @ ids)
    z = test.double() / test.double().norm(dim=1, keepdim=True)
    p = torch.softmax(head.double()(z), dim=1).clamp(1e-12, 1 - 1e-12)
    q = ((z @ proj) * z).sum(1, keepdim=True)
    g = q / (1 + q)
    expected = torch.log((p / (p + (1 - p) * p**g)).sum(1)) / torch.log(torch.tensor(5.0))
    torch.testing.assert_close(scorer(test).double(), expected.detach(), rtol=1e-4, atol=1e-6)


def test_exports_to_onnx_with_its_fitted_state():
    x, y, test = _data(4)
    scorer = PNML(head=_head()).fit(x, y)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-6)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(PNML, _reference(), skip=("encoder", "head"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: PNML(torch.nn.Identity(), h), "PNML: argument 'encoder' must be None"),
        (lambda h: PNML(), "PNML: argument 'head'"),
        (lambda h: PNML(head=h, eps=0.0), "PNML: argument 'eps'"),
        (lambda h: PNML(head=h, eps=0.5), "PNML: argument 'eps' must be below 0.5"),
        (
            lambda h: PNML(head=torch.nn.Linear(DIM, 1)).fit(torch.randn(40, DIM)),
            "at least 2 classes",
        ),
        (lambda h: PNML(head=h).fit(torch.randn(4, DIM), torch.full((4,), -1)), "at least one ID"),
        (lambda h: PNML(head=h).fit(torch.full((5, DIM), float("nan"))), "NaN"),
        (lambda h: PNML(head=h).fit(torch.randn(40, DIM))(torch.randn(2, 3)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(_head())


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="PNML is not fitted"):
        PNML(head=_head())(torch.randn(2, DIM))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (16,)
