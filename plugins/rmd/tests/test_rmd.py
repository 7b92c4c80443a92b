"""RMD against pytorch-ood 0.4.0, its maths, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_rmd.scorer import RMD

from ood_core.scoring import NotFittedError
from ood_core.statistics import SingularCovarianceWarning
from ood_core.testing.posthoc import assert_onnx_matches, cluster_samples
from ood_core.testing.readme import run_readme_examples

README = Path(__file__).resolve().parents[1] / "README.md"
N, D, C = 240, 10, 4


def _data(n: int = N, d: int = D, seed: int = 0):
    return cluster_samples(n, d, C, seed=seed, dtype=torch.float64)


@pytest.fixture(scope="module")
def ref():
    reference = pytest.importorskip("ood_core.testing.reference")
    try:
        return reference.pytorch_ood_detector("rmd")
    except ImportError as exc:  # pragma: no cover - pytorch-ood not installed
        pytest.skip(str(exc))


def test_score_is_0_4_0_times_n_covariance_not_scatter(ref):
    """Documented divergence: Ren et al. use covariances; 0.4.0 scatter matrices (+1e-6 I)."""
    x, y = _data()
    probe, _ = _data(50, seed=1)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # 0.4.0 allocates with the default dtype
    try:
        theirs = ref.RMD(None).fit_features(x, y).predict_features(probe)
    finally:
        torch.set_default_dtype(old)
    # 0.4.0's ridge 1e-6 on N * S is eps = 1e-6 / N on S
    ours = RMD(eps=1e-6 / N).double().fit(x, y)(probe)
    rel = ((ours - N * theirs).abs() / (N * theirs).abs()).max().item()
    print(f"rmd vs 0.4.0 * N: max abs {(ours - N * theirs).abs().max():.2e} rel {rel:.2e}")
    assert torch.allclose(ours, N * theirs, rtol=1e-5, atol=1e-6)
    assert torch.equal(ours.argsort(), theirs.argsort())


def test_score_is_class_distance_minus_background_distance():
    x, y = _data()
    ours = RMD().double().fit(x, y)
    means = torch.stack([x[y == k].mean(0) for k in range(C)])
    within = sum((x[y == k] - means[k]).T @ (x[y == k] - means[k]) for k in range(C)) / N
    total = torch.cov(x.T, correction=0)
    probe = x[:6]
    diff = probe[:, None] - means[None]
    d = torch.einsum("bcd,de,bce->bc", diff, torch.linalg.inv(within), diff)
    c0 = probe - x.mean(0)
    d0 = torch.einsum("bd,de,be->b", c0, torch.linalg.inv(total), c0)
    assert torch.allclose(ours(probe), (d - d0[:, None]).min(1).values, rtol=1e-8, atol=1e-8)
    assert torch.equal(ours.predict(probe), (d - d0[:, None]).argmin(1))


def test_segmentation_scores_every_pixel():
    scorer = RMD().fit(*_data())
    maps = torch.randn(2, D, 3, 4)
    flat = scorer(maps.permute(0, 2, 3, 1).reshape(-1, D)).reshape(2, 3, 4)
    assert torch.allclose(scorer(maps), flat)


def test_errors_name_the_argument():
    x, y = _data()
    with pytest.raises(NotFittedError):
        RMD()(x.float())
    with pytest.raises(ValueError, match="RMD.fit: argument 'y' must hold at least 2 classes"):
        RMD().fit(x, torch.full((N,), 2))
    with pytest.raises(ValueError, match="'features' must be width 10"):
        RMD().fit(x, y)(torch.randn(2, 3))
    bad = x.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="'x' .* infinite"):
        RMD().fit(bad, y)
    with pytest.raises(ValueError, match="argument 'encoder' must be None"):
        RMD(torch.nn.Identity())
    with pytest.warns(SingularCovarianceWarning, match="RMD: the covariance .* singular"):
        RMD().fit(*_data(n=8))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (8,)


def test_onnx_graph_carries_the_fitted_state():
    pytest.importorskip("onnxruntime")
    x, y = _data()
    assert_onnx_matches(RMD().fit(x.float(), y), x[:12].float())
