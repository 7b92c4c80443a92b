"""GMM against pytorch-ood 0.4.0, its maths, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_gmm.scorer import GMM

from ood_core.scoring import NotFittedError
from ood_core.statistics import SingularCovarianceWarning
from ood_core.testing.posthoc import assert_onnx_matches
from ood_core.testing.readme import run_readme_examples

README = Path(__file__).resolve().parents[1] / "README.md"
N, D, C = 240, 8, 4


def _data(n: int = N, d: int = D, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * (1 + y[:, None])
    return x + 2.0 * torch.nn.functional.one_hot(y, d), y


@pytest.fixture(scope="module")
def ref():
    reference = pytest.importorskip("ood_core.testing.reference")
    try:
        return reference.pytorch_ood_detector("gmm")
    except ImportError as exc:  # pragma: no cover - pytorch-ood not installed
        pytest.skip(str(exc))


@pytest.mark.parametrize("reg", [1e-6, 0.3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scores_equal_0_4_0(ref, reg, dtype):
    x, y = _data()
    probe = torch.cat([_data(40, seed=1)[0], 6 * torch.randn(10, D, dtype=torch.float64)])
    theirs = ref.GMM(None, reg=reg).fit_features(x, y).predict_features(probe)
    ours = GMM(reg=reg).to(dtype).fit(x.to(dtype), y)(probe.to(dtype)).double()
    rel = ((ours - theirs).abs() / theirs.abs()).max().item()
    print(
        f"gmm vs 0.4.0 ({dtype}, reg={reg}): max abs {(ours - theirs).abs().max():.2e} rel {rel:.2e}"
    )
    assert torch.allclose(ours, theirs, rtol=1e-5 if dtype == torch.float64 else 1e-4, atol=1e-6)


def test_score_is_the_mixture_negative_log_likelihood():
    x, y = _data()
    scorer = GMM(reg=0.0).double().fit(x, y)
    probe = x[:5]
    parts = []
    for k in range(C):
        xs = x[y == k]
        normal = torch.distributions.MultivariateNormal(xs.mean(0), torch.cov(xs.T, correction=0))
        parts.append(normal.log_prob(probe) + torch.log(torch.tensor(len(xs) / N)))
    expected = -torch.logsumexp(torch.stack(parts, 1), 1)
    assert torch.allclose(scorer(probe), expected, rtol=1e-9)
    assert torch.equal(scorer.predict(probe), torch.stack(parts, 1).argmax(1))


def test_segmentation_and_absent_classes():
    x, y = _data()
    scorer = GMM().fit(x, y * 2)  # labels 0, 2, 4, 6: absent classes are not components
    assert scorer.classes.tolist() == [0, 2, 4, 6] and scorer.centres.shape == (4, D)
    maps = torch.randn(2, D, 3, 4)
    flat = scorer(maps.permute(0, 2, 3, 1).reshape(-1, D)).reshape(2, 3, 4)
    assert torch.allclose(scorer(maps), flat)
    assert set(scorer.predict(x[:8].float()).tolist()) <= {0, 2, 4, 6}


def test_errors_name_the_argument():
    x, y = _data()
    with pytest.raises(NotFittedError):
        GMM()(x.float())
    with pytest.raises(ValueError, match="'features' must be width 8"):
        GMM().fit(x, y)(torch.randn(2, 3))
    bad = x.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        GMM().fit(bad, y)
    with pytest.raises(ValueError, match="argument 'reg' must be a finite number >= 0"):
        GMM(reg=None)
    with pytest.raises(ValueError, match="argument 'encoder' must be None"):
        GMM(torch.nn.Identity())
    few = _data(n=4 * 5)  # 5 samples a class in 8 dimensions
    with pytest.warns(SingularCovarianceWarning, match="GMM: the covariance .* eps=1e-06"):
        assert torch.isfinite(GMM().fit(*few)(torch.randn(3, D))).all()
    with pytest.warns(SingularCovarianceWarning), pytest.raises(ValueError, match="larger eps"):
        GMM(reg=0.0).fit(*few)


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (8,)


def test_onnx_graph_carries_the_fitted_state():
    pytest.importorskip("onnxruntime")
    x, y = _data()
    assert_onnx_matches(GMM().fit(x.float(), y), x[:12].float())
