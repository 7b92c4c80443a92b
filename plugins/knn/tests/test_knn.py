"""KNN: pytorch-ood 0.4.0 parity, the bounded bank, ONNX with the bank, errors, README."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_knn import KNN

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.posthoc import cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference():
    return pytorch_ood_detector("knn").KNN


def _data(seed: int, n: int = 300, dim: int = 32, classes: int = 5):
    x, y = cluster_samples(n, dim, classes, seed=seed)
    y[::7] = -1  # OOD-labelled rows: both implementations drop them
    test = torch.cat(
        [cluster_samples(40, dim, classes, seed=seed + 100)[0], torch.randn(40, dim) * 6]
    )
    return x, y, test


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k, normalize", [(1, True), (10, True), (50, True), (7, False)])
def test_matches_pytorch_ood(seed, k, normalize):
    x, y, test = _data(seed)
    ours = ood_core.create_scorer("KNN", k=k, normalize=normalize).fit(x, y)
    theirs = _reference()(None, k=k, normalize=normalize).fit_features(x, y)
    expected = theirs.predict_features(test)
    got = ours(test)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_formula_written_out():
    bank = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z = torch.tensor([[1.0, 0.0]])
    unit = bank / bank.norm(dim=1, keepdim=True)
    dist = sorted(float((z[0] - row).norm()) for row in unit)
    assert KNN(k=2).fit(bank)(z).item() == pytest.approx(dist[1], rel=1e-6)
    raw = sorted(float((z[0] - row).norm()) for row in bank)
    assert KNN(k=3, normalize=False).fit(bank)(z).item() == pytest.approx(raw[2], rel=1e-6)


def test_distance_is_exact_next_to_a_bank_row():
    # a matmul-only distance sqrt(2 - 2 cos) loses ~1e-4 here; the difference form does not
    bank = torch.randn(50, 16, dtype=torch.float64)
    scorer = KNN(k=1).fit(bank)
    unit = bank[3] / bank[3].norm()
    near = (unit + 1e-6 * torch.randn(16, dtype=torch.float64)).float()[None]
    expected = (near.double()[0] / near.double().norm() - unit).norm()
    assert scorer(near).item() == pytest.approx(float(expected), abs=1e-7)


def test_streaming_fit_equals_one_tensor_and_bank_is_bounded():
    x = torch.randn(1000, 8)
    batches = [x[i : i + 64] for i in range(0, 1000, 64)]
    with pytest.warns(UserWarning, match=r"1000 samples exceed max_bank=100; keeping an evenly"):
        streamed = KNN(k=5, max_bank=100).fit(iter(batches))
    with pytest.warns(UserWarning):
        whole = KNN(k=5, max_bank=100).fit(x)
    assert streamed.bank.shape == (100, 8)
    assert torch.equal(streamed.bank, whole.bank)
    # evenly spread: every tenth of the stream contributes about a tenth of the bank
    unit = x / x.norm(dim=1, keepdim=True)
    rows = [int(((unit - row) ** 2).sum(1).argmin()) for row in streamed.bank]
    counts = torch.bincount(torch.tensor(rows) // 100, minlength=10)
    assert int(counts.min()) >= 8 and int(counts.max()) <= 12, counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KNN(k=5, max_bank=1000).fit(x)  # at the limit: no warning


def test_exports_to_onnx_with_its_bank():
    x, y, test = _data(3)
    scorer = KNN(k=5).fit(x, y)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-5)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(KNN, _reference(), skip=("encoder", "knn_kwargs"))
    scorer = KNN(None, 5, True, algorithm="brute", n_jobs=2, metric="euclidean", leaf_size=10)
    assert scorer.k == 5


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: KNN(torch.nn.Identity()), "KNN: argument 'encoder' must be None"),
        (lambda: KNN(k=0), "KNN: argument 'k' must be a positive integer"),
        (lambda: KNN(normalize=1), "KNN: argument 'normalize'"),
        (lambda: KNN(max_bank=0), "KNN: argument 'max_bank'"),
        (lambda: KNN(metric="cosine"), "KNN: argument 'metric'"),
        (lambda: KNN(k=5).fit(torch.randn(4, 3)), r"KNN.fit: argument 'k'.*k=5 with 4 ID"),
        (
            lambda: KNN(k=1).fit(torch.randn(4, 3), torch.full((4,), -1)),
            r"k=1 with 0 ID sample",
        ),
        (lambda: KNN(k=1).fit(torch.tensor([[0.0, float("nan")]])), "NaN"),
        (lambda: KNN(k=1).fit(torch.randn(4, 3))(torch.randn(2, 5)), r"'features'.*\(B, 3\)"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="KNN is not fitted"):
        KNN()(torch.randn(2, 3))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
