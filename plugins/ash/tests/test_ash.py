"""ASH: pytorch-ood 0.4.0 parity per variant on a torchvision-style CNN, export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_ash import ASH

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
VARIANTS = ("ash-p", "ash-b", "ash-s")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("percentile", [0.0, 0.65, 0.9])
def test_matches_pytorch_ood_on_the_same_images(variant, percentile):
    net = TinyNet().eval()
    out = tapped_outputs(net, 40, 1)
    ours = ood_core.create_scorer("ASH", head=net.fc, variant=variant, percentile=percentile)
    theirs = pytorch_ood_detector("ash").ASH(net.features, net.head_on_maps, variant, percentile)
    expected = theirs.predict(images(40, 1))  # 0.4.0 runs its backbone on the images
    torch.testing.assert_close(ours(out["feature_maps"]), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.predict(out["feature_maps"]), out["logits"].argmax(1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_pooled_features_are_one_by_one_maps(variant):
    net = TinyNet().eval()
    z = tapped_outputs(net, 20, 2)["feature_maps"].mean(dim=(2, 3))
    ours = ASH(head=net.fc, variant=variant)
    theirs = pytorch_ood_detector("ash").ASH(None, net.head_on_maps, variant)
    torch.testing.assert_close(ours(z), theirs.predict_feature_maps(z[:, :, None, None]))


def test_shaping_is_the_papers_formula_written_out():
    x = torch.tensor([[4.0, 0.0, 1.0, 3.0, 2.0]])  # n = 5, percentile 0.6: keep k = 2 (4, 3)
    head = torch.nn.Linear(5, 2)
    kept = torch.tensor([[4.0, 0.0, 0.0, 3.0, 0.0]])
    expected = {
        "ash-p": kept,
        "ash-b": torch.tensor([[5.0, 0.0, 0.0, 5.0, 0.0]]),  # s1 / k = 10 / 2
        "ash-s": kept * torch.exp(torch.tensor(10.0 / 7.0)),
    }
    for variant, shaped in expected.items():
        got = ASH(head=head, variant=variant, percentile=0.6)(x)
        torch.testing.assert_close(got, -torch.logsumexp(head(shaped), dim=1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_tapped_classifier_with_ash_exports_to_onnx(variant):
    net = TinyNet().eval()
    scorer = ASH(head=net.fc, variant=variant)
    assert_tapped_onnx_matches(ood_core.tap(net, feature_maps="features"), scorer, images(7, 6))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: ASH(torch.nn.Identity(), n.fc), "ASH: argument 'backbone' must be None"),
        (lambda n: ASH(), "ASH: argument 'head'"),
        (lambda n: ASH(head=n.fc, variant="ash-x"), "ASH: argument 'variant' must be one of"),
        (lambda n: ASH(head=n.fc, percentile=1.0), r"ASH: argument 'percentile'.*\[0, 1\)"),
        (lambda n: ASH(head=n.fc, percentile=0.99)(torch.rand(2, 16)), "keeps at least one"),
        (lambda n: ASH(head=n.fc)(torch.rand(2, 5, 3, 3)), "'feature_maps'"),
        (lambda n: ASH(head=n.fc)(torch.rand(2, 16, 3, 3).log() * float("nan")), "NaN"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(TinyNet())


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
