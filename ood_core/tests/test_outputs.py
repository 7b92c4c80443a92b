"""Models with several outputs: select_output and tap (a torchvision-style classifier, unedited)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.export import Dim

import ood_core
from ood_core.outputs import select_output, tap


class TinyResNet(nn.Module):
    """torchvision style: a backbone, ``avgpool``, ``flatten`` and ``fc`` in forward."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.layer1(self.conv1(x))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


def _reference(net: TinyResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    maps = net.layer1(net.conv1(x))
    features = net.avgpool(maps).flatten(1)
    return {"feature_maps": maps, "features": features, "logits": net.fc(features)}


def test_tap_gives_named_outputs_without_editing_the_class():
    net = TinyResNet().eval()
    tapped = tap(net, features="avgpool", feature_maps="layer1")
    x = torch.randn(3, 3, 6, 6)
    out, ref = tapped(x), _reference(net, x)
    assert set(out) == {"logits", "features", "feature_maps"}
    for key in ref:
        assert torch.allclose(out[key], ref[key], atol=1e-6), key
    assert net(x).shape == (3, 5)  # the model itself is unchanged
    assert torch.allclose(tap(net, logits="fc", features="avgpool")(x)["logits"], ref["logits"])


def test_tapped_model_exports_and_deep_copies():
    net = TinyResNet().eval()
    tapped = tap(net, features="avgpool")
    x = torch.randn(2, 3, 6, 6)
    program = torch.export.export(
        tapped, (x,), dynamic_shapes=({0: Dim("b", min=1, max=64)},), strict=False
    )
    y = torch.randn(5, 3, 6, 6)
    got, ref = program.module()(y), _reference(net, y)
    assert torch.allclose(got["features"], ref["features"], atol=1e-6)
    assert torch.allclose(got["logits"], ref["logits"], atol=1e-6)
    clone = copy.deepcopy(tapped)
    assert torch.allclose(clone(y)["features"], ref["features"], atol=1e-6)


def test_tapped_model_saves_and_loads(tmp_path):
    tapped = tap(TinyResNet().eval(), features="avgpool")
    x = torch.randn(2, 3, 6, 6)
    ckpt = ood_core.load(ood_core.save(tmp_path / "m.pt", tapped, example_input=x))
    output = ckpt.metadata["model"]["output"]
    assert output["kind"] == "dict" and set(output["keys"]) == {"logits", "features"}
    assert torch.allclose(ckpt.model(x)["features"], tapped(x)["features"], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": "avgpol"}, "does not name a submodule of TinyResNet; submodules: conv1"),
        ({"feats": "avgpool"}, "output name 'feats' is not one of"),
        ({}, "name at least one module"),
        ({"features": "avgpool", "output": "scores"}, "argument 'output' must be one of"),
    ],
)
def test_tap_rejects_bad_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tap(TinyResNet(), **kwargs)


def test_removed_hooks_fail_loudly():
    tapped = tap(TinyResNet(), features="avgpool")
    tapped.remove()
    with pytest.raises(RuntimeError, match="'avgpool' .*did not run"):
        tapped(torch.randn(2, 3, 6, 6))


def test_select_output():
    logits, feats = torch.randn(2, 3), torch.randn(2, 4)
    out = {"logits": logits, "features": feats}
    assert select_output(out, "features") is feats
    assert select_output(out, ("features", "logits")) == (feats, logits)
    assert select_output(logits, "logits") is logits
    with pytest.raises(
        ValueError, match="msp reads embedding but the model outputs logits, features"
    ):
        select_output(out, "embedding", owner="msp")
    with pytest.raises(ValueError, match="returns one tensor"):
        select_output(logits, ("logits", "features"))
    with pytest.raises(ValueError, match="tensor or a dict"):
        select_output([logits], "logits")
