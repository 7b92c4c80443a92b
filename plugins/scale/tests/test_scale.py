"""SCALE: pytorch-ood 0.4.0 parity on a torchvision-style CNN, the formula, export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_scale import SCALE

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector
from ood_core.testing.shaping import (
    TinyNet,
    assert_tapped_onnx_matches,
    images,
    tapped_outputs,
)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("percentile", [0.0, 0.65, 0.9])
def test_matches_pytorch_ood_on_the_same_images(percentile):
    net = TinyNet().eval()
    out = tapped_outputs(net, 40, 1)
    ours = ood_core.create_scorer("SCALE", head=net.fc, percentile=percentile)
    theirs = pytorch_ood_detector("scale").SCALE(net.features, net.head_on_maps, percentile)
    expected = theirs.predict(images(40, 1))  # 0.4.0 runs its backbone on the images
    torch.testing.assert_close(ours(out["feature_maps"]), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.predict(out["feature_maps"]), out["logits"].argmax(1))


def test_pooled_features_are_one_by_one_maps_and_the_formula_holds():
    x = torch.tensor([[4.0, 0.0, 1.0, 3.0, 2.0]])  # percentile 0.6 keeps k = 2: s2 = 7, s1 = 10
    head = torch.nn.Linear(5, 2)
    expected = -torch.logsumexp(head(x * torch.exp(torch.tensor(10.0 / 7.0))), dim=1)
    torch.testing.assert_close(SCALE(head=head, percentile=0.6)(x), expected)
    net = TinyNet().eval()
    z = tapped_outputs(net, 20, 2)["feature_maps"].mean(dim=(2, 3))
    theirs = pytorch_ood_detector("scale").SCALE(None, net.head_on_maps)
    torch.testing.assert_close(
        SCALE(head=net.fc)(z), theirs.predict_feature_maps(z[..., None, None])
    )


def test_the_tapped_classifier_with_scale_exports_to_onnx():
    net = TinyNet().eval()
    scorer = SCALE(head=net.fc)
    assert_tapped_onnx_matches(ood_core.tap(net, feature_maps="features"), scorer, images(7, 6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: SCALE(torch.nn.Identity(), n.fc), "SCALE: argument 'backbone' must be None"),
        (lambda n: SCALE(), "SCALE: argument 'head'"),
        (lambda n: SCALE(head=n.fc, percentile=-0.1), r"SCALE: argument 'percentile'"),
        (lambda n: SCALE(head=n.fc, percentile=0.99)(torch.rand(2, 16)), "keeps at least one"),
        (lambda n: SCALE(head=n.fc)(torch.rand(2, 5, 3, 3)), "'feature_maps'"),
        (lambda n: SCALE(head=n.fc)(torch.rand(2, 16, 3, 3).int()), "'feature_maps'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(TinyNet())


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
