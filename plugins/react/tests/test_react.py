"""ReAct: pytorch-ood 0.4.0 parity on a torchvision-style CNN, the bounded quantile, export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_react import ReAct

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector
from ood_core.testing.shaping import (
    TinyNet,
    assert_tapped_onnx_matches,
    images,
    tapped_outputs,
)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("percentile", [0.5, 0.9, 0.99])
def test_matches_pytorch_ood_fitted_on_the_same_feature_maps(percentile):
    net = TinyNet().eval()
    fit, test = tapped_outputs(net, 120, 0), tapped_outputs(net, 40, 1)
    y = torch.arange(120) % 5
    y[::7] = -1  # OOD rows: dropped by both
    ours = ood_core.create_scorer("ReAct", head=net.fc, percentile=percentile)
    ours.fit(fit, y)  # a dict of model outputs: the scorer takes its feature maps
    theirs = pytorch_ood_detector("react").ReAct(net.features, net.head_on_maps, None, percentile)
    theirs.fit_feature_maps(fit["feature_maps"], y)
    assert float(ours.threshold) == pytest.approx(theirs.threshold, rel=1e-6)
    expected = theirs.predict(images(40, 1))  # 0.4.0 runs its backbone on the images
    torch.testing.assert_close(ours(test["feature_maps"]), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.predict(test["feature_maps"]), test["logits"].argmax(1))


def test_given_threshold_scores_without_fit_and_fit_replaces_it():
    net = TinyNet().eval()
    maps = tapped_outputs(net, 30, 2)["feature_maps"]
    ours = ReAct(None, net.fc, threshold=0.2)
    theirs = pytorch_ood_detector("react").ReAct(None, net.head_on_maps, threshold=0.2)
    torch.testing.assert_close(ours(maps), theirs.predict_feature_maps(maps))
    ours.fit(maps)
    assert float(ours.threshold) == pytest.approx(float(maps.double().quantile(0.9)), rel=1e-12)


def test_a_custom_detector_scores_the_clipped_logits():
    net = TinyNet().eval()
    maps = tapped_outputs(net, 30, 3)["feature_maps"]

    def msp(logits):
        return -logits.softmax(dim=1).amax(dim=1)

    ours = ReAct(head=net.fc, threshold=0.3, detector=msp)
    theirs = pytorch_ood_detector("react").ReAct(None, net.head_on_maps, 0.3, detector=msp)
    torch.testing.assert_close(ours(maps), theirs.predict_feature_maps(maps))


def test_quantile_of_a_bounded_subsample_warns_and_stays_close():
    # 64 x 16 x 4 x 4 = 16384 activations, 4096 kept: rank error ~ sqrt(.9 * .1 / 4096) = 0.5%
    net = TinyNet().eval()
    maps = tapped_outputs(net, 64, 4)["feature_maps"]
    batches = [maps[i : i + 10] for i in range(0, 64, 10)]
    with pytest.warns(UserWarning, match="16384 samples exceed max_activations=4096"):
        small = ReAct(head=net.fc, max_activations=4096).fit(batches)
    exact = float(maps.double().quantile(0.9))
    rank = float((maps.double() <= float(small.threshold)).double().mean())
    assert abs(rank - 0.9) < 0.01, (rank, float(small.threshold), exact)
    again = ReAct(head=net.fc, max_activations=4096)
    with pytest.warns(UserWarning):
        again.fit(maps)  # one batch or many: the same kept values
    assert float(again.threshold) == float(small.threshold)


def test_the_tapped_classifier_with_react_exports_to_onnx():
    net = TinyNet().eval()
    scorer = ReAct(head=net.fc).fit(tapped_outputs(net, 50, 5))
    assert_tapped_onnx_matches(ood_core.tap(net, feature_maps="features"), scorer, images(7, 6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: ReAct(torch.nn.Identity(), n.fc), "ReAct: argument 'backbone' must be None"),
        (lambda n: ReAct(), "ReAct: argument 'head'"),
        (lambda n: ReAct(head=n.fc, percentile=1.5), "ReAct: argument 'percentile'"),
        (lambda n: ReAct(head=n.fc, threshold=float("nan")), "ReAct: argument 'threshold'"),
        (lambda n: ReAct(head=n.fc, detector="energy"), "ReAct: argument 'detector'"),
        (lambda n: ReAct(head=n.fc).fit(torch.rand(4, 7, 2, 2)), r"ReAct.fit: argument 'x'"),
        (lambda n: ReAct(head=n.fc).fit(torch.rand(4, 16), -torch.ones(4, dtype=int)), "no ID"),
        (lambda n: ReAct(head=n.fc).fit(torch.full((3, 16), float("nan"))), "NaN"),
        (lambda n: ReAct(head=n.fc, threshold=1)(torch.rand(2, 5, 3, 3)), "'feature_maps'"),
        (lambda n: ReAct(head=n.fc, threshold=1)(torch.rand(2, 16, 3)), "'feature_maps'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(TinyNet())


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="ReAct is not fitted"):
        ReAct(head=TinyNet().fc)(torch.rand(2, 16, 2, 2))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
