"""Streaming float64 class statistics and the regularised precision, against numpy and sklearn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ood_core.statistics import (
    ClassStatistics,
    SingularCovarianceWarning,
    precision,
    squared_distances,
)


def _data(n: int = 300, d: int = 6, classes: int = 4, offset: float = 0.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * (1 + torch.arange(d)) + y[:, None]
    return x + offset, y


def _stream(x, y, sizes, **kwargs) -> ClassStatistics:
    stats = ClassStatistics(**kwargs)
    start = 0
    for size in sizes:
        stats.update(x[start : start + size], None if y is None else y[start : start + size])
        start += size
    return stats


@pytest.mark.parametrize("sizes", [(300,), (1, 299), (7,) * 42 + (6,), (150, 0, 150)])
def test_streamed_moments_equal_numpy(sizes):
    x, y = _data()
    m = _stream(x, y, sizes, per_class=True).finalize()
    xn, yn = x.numpy(), y.numpy()
    for c in range(4):
        assert np.allclose(m.means[c].numpy(), xn[yn == c].mean(0), atol=1e-12)
        assert np.allclose(m.class_covariances(ddof=1)[c].numpy(), np.cov(xn[yn == c].T))
    within = sum(np.cov(xn[yn == c].T, bias=True) * (yn == c).sum() for c in range(4)) / len(yn)
    assert np.allclose(m.shared_covariance().numpy(), within, atol=1e-12)
    assert np.allclose(m.total_mean().numpy(), xn.mean(0))
    assert np.allclose(m.total_covariance(ddof=1).numpy(), np.cov(xn.T))
    assert m.counts.dtype == torch.float64 and m.total == 300


def test_unlabelled_covariance_equals_sklearn_empirical_covariance():
    sklearn_cov = pytest.importorskip("sklearn.covariance")
    x, _ = _data()
    m = _stream(x, None, (100, 100, 100)).finalize()
    ref = sklearn_cov.EmpiricalCovariance().fit(x.numpy())
    assert np.allclose(m.shared_covariance().numpy(), ref.covariance_, atol=1e-12)
    assert np.allclose(m.means[0].numpy(), ref.location_)
    assert np.allclose(precision(m.shared_covariance(), owner="t").matrix.numpy(), ref.precision_)


def test_large_offset_does_not_cancel_digits():
    """Centred (Chan) merging keeps the covariance of features far from the origin."""
    x, y = _data(offset=1e8)
    m = _stream(x, y, (50,) * 6).finalize()
    xn, yn = x.numpy(), y.numpy()
    within = sum(np.cov(xn[yn == c].T, bias=True) * (yn == c).sum() for c in range(4)) / 300
    assert np.allclose(m.shared_covariance().numpy(), within, rtol=1e-6, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), st.integers(0, 2**16))
def test_any_batching_gives_the_same_statistics(sizes, seed):
    x, y = _data(n=sum(sizes) + 3, seed=seed)
    whole = _stream(x, y, (x.shape[0],), per_class=True).finalize()
    parts = _stream(x, y, tuple(sizes) + (3,), per_class=True).finalize()
    assert torch.allclose(whole.counts, parts.counts)
    assert torch.allclose(whole.means, parts.means, atol=1e-10)
    assert torch.allclose(whole.scatter, parts.scatter, rtol=1e-9, atol=1e-8)
    assert torch.allclose(whole.class_scatter, parts.class_scatter, rtol=1e-9, atol=1e-8)


def test_classes_grow_with_labels_and_absent_classes_are_marked():
    stats = ClassStatistics()
    stats.update(torch.randn(4, 3), torch.tensor([0, 0, 2, 2]))
    stats.update(torch.randn(2, 3), torch.tensor([5, 5]))
    m = stats.finalize()
    assert m.counts.tolist() == [2, 0, 2, 0, 0, 2]
    assert m.present.tolist() == [True, False, True, False, False, True]
    assert torch.equal(m.means[1], torch.zeros(3, dtype=torch.float64))
    fixed = ClassStatistics(8).update(torch.randn(2, 3), torch.tensor([0, 1])).finalize()
    assert fixed.counts.shape == (8,)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.randn(3), None, "'x' must be a float tensor"),
        (torch.ones(3, 2, dtype=torch.long), None, "'x' must be a float tensor"),
        (torch.randn(3, 2), torch.tensor([0.0, 1.0, 0.0]), "'y' must be an integer"),
        (torch.randn(3, 2), torch.tensor([0, 1]), r"'y' must be shape \(3,\)"),
        (torch.randn(3, 2), torch.tensor([0, -1, 0]), "'y' must be labels >= 0"),
        (torch.randn(3, 2), torch.tensor([0, 1, 9]), "below num_classes=3"),
    ],
)
def test_bad_batches_are_value_errors_naming_the_argument(x, y, match):
    with pytest.raises(ValueError, match=match):
        ClassStatistics(3, owner="Demo").update(x, y)


def test_width_change_and_empty_finalize_are_refused():
    stats = ClassStatistics(owner="Demo").update(torch.randn(2, 3))
    with pytest.raises(ValueError, match="Demo: argument 'x' must be width 3"):
        stats.update(torch.randn(2, 4))
    with pytest.raises(ValueError, match="Demo.fit: argument 'x' holds no samples"):
        ClassStatistics(owner="Demo").finalize()
    with pytest.raises(ValueError, match="num_classes"):
        ClassStatistics(0)


def test_precision_of_a_regular_covariance_is_its_inverse_without_warning():
    x, y = _data()
    cov = ClassStatistics().update(x, y).finalize().shared_covariance()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = precision(cov, owner="Demo")
    assert torch.allclose(p.matrix, torch.linalg.inv(cov), rtol=1e-10, atol=1e-12)
    assert torch.allclose(p.logdet, torch.linalg.slogdet(cov).logabsdet)
    assert torch.allclose(p.whiten @ p.whiten.T, p.matrix, rtol=1e-10, atol=1e-12)
    assert p.eps == 0.0
    diff = x[:5, None, :] - x[None, 10:13, :]
    expected = torch.einsum("ncd,de,nce->nc", diff, p.matrix, diff)
    found = squared_distances(x[:5] @ p.whiten, x[10:13] @ p.whiten)
    assert torch.allclose(found, expected, rtol=1e-9)


@pytest.mark.parametrize("case", ["fewer samples than dims", "constant feature"])
def test_singular_covariance_is_regularised_with_a_warning(case):
    if case == "constant feature":
        x = torch.randn(50, 4, dtype=torch.float64)
        x[:, 2] = 3.0
    else:
        x = torch.randn(3, 8, dtype=torch.float64)
    cov = ClassStatistics().update(x).finalize().shared_covariance()
    with pytest.warns(
        SingularCovarianceWarning, match=r"Demo: the covariance .* singular .*eps\*I"
    ):
        p = precision(cov, owner="Demo")
    assert p.eps > 0 and torch.isfinite(p.matrix).all()
    ridge = cov + p.eps * torch.eye(cov.shape[0], dtype=torch.float64)
    assert torch.allclose(p.matrix @ ridge, torch.eye(cov.shape[0], dtype=torch.float64), atol=1e-6)


def test_batched_precision_and_explicit_eps():
    covs = torch.stack([torch.eye(3, dtype=torch.float64) * s for s in (1.0, 2.0, 4.0)])
    p = precision(covs, owner="Demo", eps=1.0)
    assert torch.allclose(
        p.matrix, torch.stack([torch.eye(3) / (s + 1) for s in (1, 2, 4)]).double()
    )
    assert p.logdet.shape == (3,)
    bad = -torch.eye(2, dtype=torch.float64)
    with pytest.warns(SingularCovarianceWarning), pytest.raises(ValueError, match="not positive"):
        precision(bad, owner="Demo", eps=0.0)
