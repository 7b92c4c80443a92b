"""NNGuide: pytorch-ood 0.4.0 parity, the formula, the bounded bank, ONNX, errors, README."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_nnguide import NNGuide

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.posthoc import cluster_head, cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _reference():
    return pytorch_ood_detector("nnguide").NNGuide


def _data(seed: int):
    x, y = cluster_samples(300, DIM, CLASSES, seed=seed)
    y[::9] = -1
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 100)[0], torch.randn(40, DIM)])
    return x, y, test


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_matches_pytorch_ood(seed, k):
    x, y, test = _data(seed)
    head = cluster_head(DIM, CLASSES)
    ours = ood_core.create_scorer("NNGuide", head=head, k=k).fit(x, y)
    with torch.no_grad():
        theirs = _reference()(None, head, k=k).fit_features(x, y)
    torch.testing.assert_close(ours(test), theirs.predict_features(test), rtol=1e-5, atol=1e-4)


def test_formula_written_out():
    head = torch.nn.Linear(2, 2)
    bank = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z = torch.tensor([[1.0, 2.0]])
    energy = lambda v: torch.logsumexp(head(v), dim=1)  # noqa: E731
    unit = lambda v: v / v.norm(dim=1, keepdim=True)  # noqa: E731
    sims = (unit(z) @ (unit(bank) * energy(bank)[:, None]).T)[0].sort(descending=True).values
    expected = -(sims[:2].mean() * energy(z)[0])
    assert NNGuide(head=head, k=2).fit(bank)(z).item() == pytest.approx(
        float(expected.detach()), rel=1e-6
    )


def test_bounded_bank_warns_and_streams():
    x, y, _ = _data(2)
    head = cluster_head(DIM, CLASSES)
    with pytest.warns(UserWarning, match="exceed max_bank=50"):
        streamed = NNGuide(head=head, max_bank=50).fit(
            [(x[i : i + 40], y[i : i + 40]) for i in range(0, 300, 40)]
        )
    with pytest.warns(UserWarning):
        whole = NNGuide(head=head, max_bank=50).fit(x, y)
    assert streamed.bank.shape == (50, DIM) and torch.equal(streamed.bank, whole.bank)


def test_exports_to_onnx_with_its_bank():
    x, y, test = _data(3)
    scorer = NNGuide(head=cluster_head(DIM, CLASSES)).fit(x, y)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-4)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(NNGuide, _reference(), skip=("encoder", "head"))
    assert NNGuide(None, cluster_head(DIM, CLASSES), 5).k == 5


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: NNGuide(torch.nn.Identity(), h), "NNGuide: argument 'encoder' must be None"),
        (lambda h: NNGuide(), "NNGuide: argument 'head'"),
        (lambda h: NNGuide(head=h, k=0), "NNGuide: argument 'k'"),
        (lambda h: NNGuide(head=h, max_bank=-1), "NNGuide: argument 'max_bank'"),
        (lambda h: NNGuide(head=h, k=20).fit(torch.randn(5, DIM)), r"k=20 with 5 ID"),
        (lambda h: NNGuide(head=h).fit(torch.full((20, DIM), float("nan"))), "NaN"),
        (lambda h: NNGuide(head=h, k=2).fit(torch.randn(5, DIM))(torch.randn(2, 3)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES))


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="NNGuide is not fitted"):
        NNGuide(head=cluster_head(DIM, CLASSES))(torch.randn(2, DIM))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
