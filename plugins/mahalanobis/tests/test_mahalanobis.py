"""Mahalanobis and MultiMahalanobis against pytorch-ood 0.4.0, streaming, export and errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_mahalanobis.scorer import Mahalanobis, MultiMahalanobis
from torch.export import Dim

from ood_core.scoring import NotFittedError
from ood_core.statistics import SingularCovarianceWarning
from ood_core.testing.posthoc import assert_onnx_matches, cluster_samples
from ood_core.testing.readme import run_readme_examples

README = Path(__file__).resolve().parents[1] / "README.md"
N, D, C = 240, 12, 4


def _data(n: int = N, d: int = D, seed: int = 0, offset: float = 0.0):
    x, y = cluster_samples(n, d, C, seed=seed, dtype=torch.float64)
    return x + offset, y


@pytest.fixture(scope="module")
def ref():
    reference = pytest.importorskip("ood_core.testing.reference")
    try:
        return reference.pytorch_ood_detector
    except ImportError as exc:  # pragma: no cover - pytorch-ood not installed
        pytest.skip(str(exc))


def _in_float64(fn):
    """0.4.0 allocates its statistics with the default dtype: run it in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return fn()
    finally:
        torch.set_default_dtype(old)


def test_score_is_0_4_0_times_2n_covariance_not_scatter(ref):
    """Documented divergence: Lee et al. use the covariance S (0.4.0: scatter N*S + 1e-6 I, halved)."""
    x, y = _data()
    probe, _ = _data(50, seed=1)
    theirs = _in_float64(lambda: ref("mahalanobis").Mahalanobis(None).fit_features(x, y))
    theirs = _in_float64(lambda: theirs.predict_features(probe))
    ours = Mahalanobis(eps=1e-6 / N).double().fit(x, y)(probe)  # 0.4.0: 1e-6 I on N * S
    rel = ((ours - 2 * N * theirs).abs() / ours.abs()).max().item()
    print(
        f"mahalanobis vs 0.4.0 * 2N: max abs {(ours - 2 * N * theirs).abs().max():.2e} rel {rel:.2e}"
    )
    assert torch.allclose(ours, 2 * N * theirs, rtol=1e-10, atol=0)
    default = Mahalanobis().double().fit(x, y)(probe)  # no ridge: differs by the ridge only
    assert torch.allclose(default, 2 * N * theirs, rtol=1e-5, atol=0)
    assert torch.equal(ours.argsort(), theirs.argsort())


def test_covariance_is_the_mle_of_lee_et_al():
    x, y = _data()
    ours = Mahalanobis().double().fit(x, y)
    means = torch.stack([x[y == k].mean(0) for k in range(C)])
    cov = sum((x[y == k] - means[k]).T @ (x[y == k] - means[k]) for k in range(C)) / N
    diff = x[:7, None] - means[None]
    expected = torch.einsum("bcd,de,bce->bc", diff, torch.linalg.inv(cov), diff).min(1).values
    assert torch.allclose(ours(x[:7]), expected, rtol=1e-9)
    assert torch.equal(
        ours.predict(x[:7]),
        torch.einsum("bcd,de,bce->bc", diff, torch.linalg.inv(cov), diff).argmin(1),
    )


def test_multi_is_0_4_0_times_2n_with_alpha(ref):
    layers = [torch.randn(N, 6, 3, 3, dtype=torch.float64), _data(d=5)[0]]
    y = _data()[1]
    layers[0] += torch.nn.functional.one_hot(y, 6)[:, :, None, None]
    probe = [torch.randn(9, 6, 3, 3, dtype=torch.float64), _data(9, d=5, seed=3)[0]]
    alpha = [0.7, 1.3]
    theirs = _in_float64(lambda: ref("mmahalanobis").MultiMahalanobis([torch.nn.Identity()], alpha))
    pooled_fit = [layers[0].mean((2, 3)), layers[1]]  # 0.4.0's fit_structured does not pool
    _in_float64(lambda: theirs.fit_structured(pooled_fit, y))
    expected = _in_float64(lambda: theirs.predict_structured(probe))
    ours = MultiMahalanobis(alpha=alpha, eps=1e-6 / N).double().fit(tuple(layers), y)
    got = ours(tuple(probe))
    diff = (got - 2 * N * expected).abs()
    print(f"multi vs 0.4.0 * 2N: max abs {diff.max():.2e} rel {(diff / got).max():.2e}")
    assert torch.allclose(got, 2 * N * expected, rtol=1e-10, atol=0)
    pooled = torch.cat([probe[0].mean((2, 3)), probe[1]], 1)
    assert torch.allclose(ours(pooled), got)  # one concatenated tensor == the tuple


def test_multi_streams_batches_of_layers_and_round_trips():
    x, y = _data()
    layers = (x[:, :4], x[:, 4:])
    whole = MultiMahalanobis().fit(layers, y)
    streamed = MultiMahalanobis().fit(
        [
            ((a[i : i + 50], b[i : i + 50]), y[i : i + 50])
            for i in range(0, N, 50)
            for a, b in [layers]
        ]
    )
    probe = (x[:5, :4].float(), x[:5, 4:].float())
    assert torch.allclose(whole(probe), streamed(probe), rtol=1e-5)
    fresh = MultiMahalanobis()
    fresh.load_state_dict(whole.state_dict())
    assert fresh._dims == (4, 8) and torch.allclose(fresh(probe), whole(probe), rtol=1e-5)
    single = Mahalanobis().fit(x, y)
    assert not torch.allclose(single(x[:5].float()), whole(probe))  # per-layer, not joint fit


@pytest.mark.parametrize("batch", [1, 7])
def test_multi_exports_at_any_batch_size(batch):
    x, y = _data()
    scorer = MultiMahalanobis(alpha=[1.0, 2.0]).fit((x[:, :4], x[:, 4:]), y).eval()
    example = (torch.randn(3, 4, 2, 2), torch.randn(3, 8))
    b = Dim("b", min=1, max=64)
    program = torch.export.export(scorer, (example,), dynamic_shapes=(({0: b}, {0: b}),))
    probe = (torch.randn(batch, 4, 2, 2), torch.randn(batch, 8))
    assert torch.allclose(program.module()(probe), scorer(probe), rtol=1e-5)


def test_large_feature_offset_keeps_scores():
    x, y = _data()
    shifted, _ = _data(offset=1e4)
    a = Mahalanobis().fit(x, y)(x[:20].float())
    b = Mahalanobis().fit(shifted.float(), y)(shifted[:20].float())
    assert torch.allclose(a, b, rtol=2e-2, atol=1e-2)


def test_segmentation_scores_every_pixel():
    x, y = _data()
    scorer = Mahalanobis().fit(x.float(), y)
    maps = torch.randn(2, D, 3, 4)
    pixels = maps.permute(0, 2, 3, 1).reshape(-1, D)
    assert torch.allclose(scorer(maps), scorer(pixels).reshape(2, 3, 4))


@pytest.mark.parametrize("cls", [Mahalanobis, MultiMahalanobis])
def test_errors_name_the_argument(cls):
    x, y = _data()
    with pytest.raises(NotFittedError):
        cls()(x.float())
    fitted = cls().fit(x.float(), y)
    with pytest.raises(ValueError, match="'features' must be width 12"):
        fitted(torch.randn(3, D + 1))
    bad = x.float().clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"'x' \(batch 0\) holds NaN"):
        cls().fit(bad, y)
    with pytest.raises(ValueError, match="'y' is required"):
        cls().fit(x.float())
    with pytest.raises(ValueError, match="argument '(encoder|model)' must be None"):
        cls(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="argument 'eps' must be None or a finite number"):
        cls(eps=-1.0)
    with pytest.raises(ValueError, match="'features' must be free of NaN"):
        fitted(torch.full((1, D), float("nan")))


def test_nan_at_score_time_fails_closed_in_the_graph():
    x, y = _data()
    scorer = Mahalanobis().fit(x.float(), y).eval()
    program = torch.export.export(scorer, (torch.randn(2, D),))
    probe = torch.randn(2, D)
    probe[1, 0] = float("nan")
    out = program.module()(probe)
    assert torch.isfinite(out[0]) and out[1] == float("inf")


def test_multi_errors():
    x, y = _data()
    with pytest.raises(ValueError, match="'alpha' must be 2 weights"):
        MultiMahalanobis(alpha=[1.0]).fit((x[:, :4], x[:, 4:]), y)
    with pytest.raises(ValueError, match="'alpha' must be None or a non-empty"):
        MultiMahalanobis(alpha=[float("nan")])
    fitted = MultiMahalanobis().fit((x[:, :4], x[:, 4:]), y)
    with pytest.raises(ValueError, match=r"layer widths \(4, 8\), got layer widths \(5, 7\)"):
        fitted((torch.randn(2, 5), torch.randn(2, 7)))
    with pytest.raises(ValueError, match=r"batch 1\) has layer widths \(5, 7\)"):
        MultiMahalanobis().fit([((x[:9, :4], x[:9, 4:]), y[:9]), ((x[:9, :5], x[:9, 5:]), y[:9])])


def test_singular_covariance_is_regularised_with_a_warning():
    x, y = _data(n=8, d=D)  # 8 samples, 12 dimensions
    with pytest.warns(SingularCovarianceWarning, match="Mahalanobis: the covariance .* singular"):
        scorer = Mahalanobis().fit(x, y)
    assert torch.isfinite(scorer(torch.randn(3, D))).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Mahalanobis().fit(*_data())


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (8,)


def test_onnx_graph_carries_the_fitted_state():
    pytest.importorskip("onnxruntime")
    x, y = _data()
    assert_onnx_matches(Mahalanobis().fit(x.float(), y), x[:12].float())
    multi = MultiMahalanobis(alpha=[1.0, 0.5]).fit((x[:, :5].float(), x[:, 5:].float()), y)
    assert_onnx_matches(multi, x[:12].float())  # the layers concatenated
