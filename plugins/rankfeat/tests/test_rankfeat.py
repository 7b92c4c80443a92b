"""RankFeat: power iteration vs exact SVD, pytorch-ood 0.4.0 parity, export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_rankfeat import RankFeat
from ood_plugin_rankfeat.scorer import remove_rank1

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector
from ood_core.testing.shaping import TinyNet, assert_tapped_onnx_matches, images, tapped_outputs

README = Path(__file__).resolve().parents[1] / "README.md"


def exact_rank1_removed(x: torch.Tensor) -> torch.Tensor:
    """``M - s1 u1 v1^T`` from ``torch.linalg.svd`` in float64."""
    m = x.double().flatten(2)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return (m - s[:, :1, None] * u[:, :, :1] @ vh[:, :1, :]).reshape(x.shape)


@pytest.mark.parametrize("channels", [8, 16, 64])  # C < H W, C = H W, C > H W (4 x 4 maps)
def test_power_iteration_matches_exact_svd_on_relu_maps(channels):
    # post-ReLU maps of a CNN: s2 / s1 <= 0.6 here, 20 iterations reach float32 precision
    maps = tapped_outputs(TinyNet(channels=channels).eval(), 100, 1)["feature_maps"]
    error = (remove_rank1(maps, 20).double() - exact_rank1_removed(maps)).abs().max()
    assert float(error) <= 1e-5 * float(maps.abs().max())


@pytest.mark.parametrize("iterations", [1, 3, 6, 12])
def test_error_follows_the_stated_rate(iterations):
    # M = U diag(s) V^T with s2 / s1 = 0.8: the leftover rank-1 error is about
    # s1 (s2 / s1) ** (2 iterations) (times the start vector's tilt), and no larger
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(10, 6, generator=g, dtype=torch.float64))
    s = torch.tensor([10.0, 8.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    m = (u * s @ v.T).reshape(1, 6, 2, 5)
    error = float((remove_rank1(m, iterations) - exact_rank1_removed(m)).abs().max())
    bound = 10.0 * 0.8 ** (2 * iterations)
    assert error <= 20 * bound
    assert error >= bound / 1000  # not exact: it is an approximation that converges


@pytest.mark.parametrize("channels", [16, 64])
def test_matches_pytorch_ood_on_the_same_feature_maps(channels):
    net = TinyNet(channels=channels).eval()
    test = tapped_outputs(net, 40, 2)
    ours = ood_core.create_scorer("RankFeat", head=net.fc)
    theirs = pytorch_ood_detector("rankfeat").RankFeat(net.features, net.head_on_maps)
    expected = theirs.predict(images(40, 2))  # exact SVD on 0.4.0's side
    torch.testing.assert_close(ours(test["feature_maps"]), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.predict(test["feature_maps"]), test["logits"].argmax(1))


def test_a_custom_detector_scores_the_shaped_logits():
    net = TinyNet().eval()
    maps = tapped_outputs(net, 20, 3)["feature_maps"]

    def msp(logits):
        return -logits.softmax(dim=1).amax(dim=1)

    theirs = pytorch_ood_detector("rankfeat").RankFeat(None, net.head_on_maps, detector=msp)
    ours = RankFeat(head=net.fc, detector=msp)
    torch.testing.assert_close(ours(maps), theirs.predict_feature_maps(maps), rtol=1e-5, atol=1e-5)


def test_an_all_zero_map_scores_finite():
    net = TinyNet().eval()
    maps = tapped_outputs(net, 3, 4)["feature_maps"]
    maps[1] = 0.0
    scores = RankFeat(head=net.fc)(maps)
    assert torch.isfinite(scores).all()
    expected = RankFeat(head=net.fc)(maps[[0, 2]])
    torch.testing.assert_close(scores[[0, 2]], expected)  # per sample: no mixing in the batch


def test_the_tapped_classifier_with_rankfeat_exports_to_onnx():
    net = TinyNet().eval()
    scorer = RankFeat(head=net.fc)
    assert_tapped_onnx_matches(ood_core.tap(net, feature_maps="features"), scorer, images(7, 6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: RankFeat(torch.nn.Identity(), n.fc), "RankFeat: argument 'backbone'"),
        (lambda n: RankFeat(), "RankFeat: argument 'head'"),
        (lambda n: RankFeat(head=n.fc, iterations=0), "RankFeat: argument 'iterations'"),
        (lambda n: RankFeat(head=n.fc, iterations=True), "RankFeat: argument 'iterations'"),
        (lambda n: RankFeat(head=n.fc, detector="energy"), "RankFeat: argument 'detector'"),
        (lambda n: RankFeat(head=n.fc)(torch.rand(2, 16)), "'feature_maps'"),
        (lambda n: RankFeat(head=n.fc)(torch.rand(2, 5, 3, 3)), r"\(B, 16, H, W\)"),
        (lambda n: RankFeat(head=n.fc)(torch.full((2, 16, 3, 3), float("nan"))), "NaN"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(TinyNet())


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
