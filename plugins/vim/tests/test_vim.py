"""ViM: the paper's formula in float64, pytorch-ood 0.4.0 parity and its float32 divergence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_vim import ViM

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.posthoc import cluster_head, cluster_samples, onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _reference(d, head):
    return pytorch_ood_detector("vim").ViM(None, d=d, w=head.weight, b=head.bias)


def _data(seed: int, scale: float = 1.0):
    x, y = cluster_samples(300, DIM, CLASSES, seed=seed)
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 100)[0], torch.randn(40, DIM)])
    return x * scale, y, test * scale


def _paper(x, head, d, test):
    """Written out in float64: alpha |(t - u) R| - logsumexp(W t + b)."""
    w, b = head.weight.detach().double(), head.bias.detach().double()
    x, test = x.double(), test.double()
    u = -torch.linalg.pinv(w) @ b
    _, vectors = torch.linalg.eigh((x - u).T @ (x - u) / len(x))
    r = vectors[:, : DIM - d]
    alpha = (x @ w.T + b).amax(1).mean() / ((x - u) @ r).norm(dim=1).mean()
    return alpha * ((test - u) @ r).norm(dim=1) - torch.logsumexp(test @ w.T + b, dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytorch_ood_where_its_float32_fit_is_accurate(seed):
    x, y, test = _data(seed)
    head = cluster_head(DIM, CLASSES)
    ours = ood_core.create_scorer("ViM", d=4, head=head).fit(x, y)
    theirs = _reference(4, head).fit_features(x, y)
    assert float(ours.alpha) == pytest.approx(theirs.alpha, rel=1e-5)
    torch.testing.assert_close(ours(test), theirs.predict_features(test), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("d", [4, 16, 28])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_is_the_float64_formula_and_closer_to_it_than_pytorch_ood(d, scale):
    # divergence: 0.4.0 fits in float32 (covariance and eigh); ours in float64
    x, y, test = _data(0, scale)
    head = cluster_head(DIM, CLASSES)
    expected = _paper(x, head, d, test)
    ours = ViM(d=d, head=head).fit(x, y)
    exact = ViM(d=d, head=head).double().fit(x, y)
    torch.testing.assert_close(exact(test.double()), expected, rtol=1e-9, atol=1e-9)
    err = ((ours(test).double() - expected).abs() / expected.abs().clamp_min(1)).max()
    ref = _reference(d, head).fit_features(x, y).predict_features(test).double()
    ref_err = ((ref - expected).abs() / expected.abs().clamp_min(1)).max()
    assert err < 1e-4 and err <= ref_err * 1.01, (float(err), float(ref_err))


def test_w_and_b_keywords_build_the_head_and_labels_below_zero_are_dropped():
    x, y, test = _data(3)
    head = cluster_head(DIM, CLASSES)
    a = ViM(None, 4, head.weight, head.bias).fit(x, y)
    b = ViM(d=4, head=head).fit(x, y)
    torch.testing.assert_close(a(test), b(test))
    y_ood = y.clone()
    y_ood[:50] = -1
    c = ViM(d=4, head=head).fit(x, y_ood)
    torch.testing.assert_close(c(test), ViM(d=4, head=head).fit(x[50:])(test))


def test_alpha_from_a_bounded_subsample_warns_and_streams():
    x, y, test = _data(4)
    head = cluster_head(DIM, CLASSES)
    with pytest.warns(UserWarning, match="300 samples exceed alpha_samples=100"):
        small = ViM(d=4, head=head, alpha_samples=100).fit(
            [x[i : i + 32] for i in range(0, 300, 32)]
        )
    full = ViM(d=4, head=head).fit(x)
    assert float(small.alpha) == pytest.approx(float(full.alpha), rel=0.05)
    torch.testing.assert_close(small.residual, full.residual)


def test_exports_to_onnx_with_its_fitted_state():
    x, y, test = _data(5)
    scorer = ViM(d=4, head=cluster_head(DIM, CLASSES)).fit(x, y)
    one, many = onnx_scores(scorer, test[:2], [test[:1], test])
    torch.testing.assert_close(one, scorer(test[:1]), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(many, scorer(test), rtol=1e-5, atol=1e-4)


def test_too_few_samples_for_d_warns():
    head = cluster_head(DIM, CLASSES)
    with pytest.warns(UserWarning, match="do not determine a principal subspace of dimension d=20"):
        ViM(d=20, head=head).fit(torch.randn(10, DIM))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: ViM(torch.nn.Identity(), 4, head=h), "ViM: argument 'encoder' must be None"),
        (lambda h: ViM(d=4), "ViM: argument 'head'"),
        (lambda h: ViM(d=None, head=h), "ViM: argument 'd' must be a positive integer"),
        (lambda h: ViM(d=4, head=torch.nn.ReLU()), "ViM: argument 'head' must be an nn.Linear"),
        (lambda h: ViM(d=4, w=h.weight, b=h.bias, head=h), "ViM: argument 'head' must be None"),
        (lambda h: ViM(d=4, w=torch.randn(3)), "ViM: argument 'w'"),
        (lambda h: ViM(d=DIM, head=h).fit(torch.randn(50, DIM)), "ViM: argument 'd' must be below"),
        (lambda h: ViM(d=4, head=h).fit(torch.randn(50, 7)), r"ViM.fit: argument 'x'.*\(B, 32\)"),
        (lambda h: ViM(d=4, head=h).fit(torch.full((3, DIM), float("nan"))), "NaN"),
        (lambda h: ViM(d=4, head=h).fit(torch.randn(50, DIM))(torch.randn(2, 5)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES))


def test_unfitted_use_raises_and_predict_is_the_heads_argmax():
    head = cluster_head(DIM, CLASSES)
    with pytest.raises(NotFittedError, match="ViM is not fitted"):
        ViM(d=4, head=head)(torch.randn(2, DIM))
    x, y = cluster_samples(20, DIM, CLASSES)
    assert torch.equal(ViM(d=4, head=head).predict(x), head(x).argmax(1))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
