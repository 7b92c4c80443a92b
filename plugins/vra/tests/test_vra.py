"""VRA: pytorch-ood 0.4.0 parity on a torchvision-style CNN, the paper's operator, export, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ood_plugin_vra import VRA

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector
from ood_core.testing.shaping import TinyNet, assert_tapped_onnx_matches, images, tapped_outputs

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("lower, upper", [(0.01, 0.99), (0.1, 0.9), (0.5, 0.5)])
def test_matches_pytorch_ood_fitted_on_the_same_feature_maps(lower, upper):
    net = TinyNet().eval()
    fit, test = tapped_outputs(net, 120, 0), tapped_outputs(net, 40, 1)
    y = torch.arange(120) % 5
    y[::7] = -1  # OOD rows: dropped by both
    ours = ood_core.create_scorer(
        "VRA", head=net.fc, lower_percentile=lower, upper_percentile=upper
    )
    ours.fit([(fit["feature_maps"][i : i + 25], y[i : i + 25]) for i in range(0, 120, 25)])
    theirs = pytorch_ood_detector("vra").VRA(net.features, net.head_on_maps, lower, upper)
    theirs.fit_feature_maps(fit["feature_maps"], y)
    torch.testing.assert_close(ours.lower.float(), theirs._lower_threshold, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.upper.float(), theirs._upper_threshold, rtol=1e-6, atol=1e-7)
    expected = theirs.predict(images(40, 1))
    torch.testing.assert_close(ours(test["feature_maps"]), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.predict(test["feature_maps"]), test["logits"].argmax(1))


def test_the_papers_operator_zeroes_low_shifts_middle_clips_high():
    x = torch.tensor([[-1.0, 0.5, 2.0, 9.0]])  # features (B, C): one unit each
    scorer = VRA(head=torch.nn.Linear(4, 3), gamma=0.25)
    scorer.fit(torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 4.0, 4.0]]))
    # lower = 0.01 quantile, upper = 0.99 quantile of each unit (numpy's interpolation)
    lo = np.quantile([[0, 0, 0, 0], [1, 1, 4, 4]], 0.01, axis=0)
    hi = np.quantile([[0, 0, 0, 0], [1, 1, 4, 4]], 0.99, axis=0)
    expected = [0.0, 0.5 + 0.25, 2.0 + 0.25, hi[3]]
    assert lo[0] > -1 and lo[1] < 0.5 < hi[1] and hi[3] < 9
    torch.testing.assert_close(scorer._shape(x.double()), torch.tensor([expected]).double())


def test_quantiles_of_a_bounded_subsample_warn_and_stay_close():
    net = TinyNet().eval()
    maps = tapped_outputs(net, 200, 4)["feature_maps"]  # 256 activations per sample
    with pytest.warns(UserWarning, match="200 samples of 256 activations exceed"):
        small = VRA(head=net.fc, max_activations=256 * 100).fit(maps)
    rank = (maps.double() <= small.upper).double().mean(0)  # per unit, ideally 0.99
    # rank error per unit ~ sqrt(.99 * .01 / 100) = 0.01; the largest of 256 units ~ 3.5x that
    error = (rank - 0.99).abs()
    assert float(error.mean()) < 0.015 and float(error.max()) < 0.05, rank
    assert not torch.equal(small.upper, VRA(head=net.fc).fit(maps).upper)  # it was reduced


def test_the_tapped_classifier_with_vra_exports_to_onnx():
    net = TinyNet().eval()
    for gamma in (None, 0.1):
        scorer = VRA(head=net.fc, gamma=gamma).fit(tapped_outputs(net, 50, 5))
        assert_tapped_onnx_matches(ood_core.tap(net, feature_maps="features"), scorer, images(7, 6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: VRA(torch.nn.Identity(), n.fc), "VRA: argument 'backbone' must be None"),
        (lambda n: VRA(), "VRA: argument 'head'"),
        (lambda n: VRA(head=n.fc, lower_percentile=-0.1), "VRA: argument 'lower_percentile'"),
        (lambda n: VRA(head=n.fc, upper_percentile=2), "VRA: argument 'upper_percentile'"),
        (lambda n: VRA(head=n.fc, lower_percentile=0.6, upper_percentile=0.5), "at most"),
        (lambda n: VRA(head=n.fc, gamma=float("inf")), "VRA: argument 'gamma'"),
        (lambda n: VRA(head=n.fc, max_activations=0), "VRA: argument 'max_activations'"),
        (lambda n: VRA(head=n.fc).fit(torch.rand(4, 7, 2, 2)), r"VRA.fit: argument 'x'"),
        (lambda n: VRA(head=n.fc).fit(torch.rand(4, 16), -torch.ones(4, dtype=int)), "no ID"),
        (lambda n: VRA(head=n.fc).fit(torch.full((3, 16), float("nan"))), "NaN"),
        (lambda n: VRA(head=n.fc).fit(torch.rand(4, 16, 3, 3))(torch.rand(2, 16, 4, 4)), "fitted"),
        (lambda n: VRA(head=n.fc).fit(torch.rand(4, 16, 3, 3))(torch.rand(2, 16)), "fitted"),
        (lambda n: VRA(head=n.fc).fit(torch.rand(4, 16))(torch.rand(2, 5)), "'feature_maps'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(TinyNet())


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="VRA is not fitted"):
        VRA(head=TinyNet().fc)(torch.rand(2, 16, 2, 2))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
