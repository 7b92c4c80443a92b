"""ood_core.save / ood_core.load: one self-contained file, no pickle, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core
from ood_core.builtin.losses import CrossEntropyLoss
from ood_core.checkpoint import FORMAT_VERSION, MANIFEST, Checkpoint
from ood_core.errors import CheckpointError


class Net(nn.Module):
    def __init__(self, out: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = Net()
    model.train()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    loss = ood_core.create_loss("cross-entropy", reduction="sum")
    ood_core.save(
        path,
        model,
        loss=loss,
        example_input=torch.randn(1, 1, 6, 6),
        classes=["cat", "dog", "eel"],
        extra={"epochs": 3},
    )
    assert model.training, "save must restore the training flag"
    return path, model.eval()


def _rewrite(src: Path, dst: Path, edit) -> None:  # noqa: ANN001
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))


def test_round_trip(saved: tuple[Path, nn.Module]) -> None:
    path, model = saved
    ckpt = ood_core.load(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.source == "oodx"
    assert ckpt.loss_name == "cross-entropy"
    assert ckpt.loss_kwargs == {"reduction": "sum"}
    assert ckpt.classes == ["cat", "dog", "eel"]
    assert ckpt.metadata["extra"] == {"epochs": 3}
    assert ckpt.metadata["format_version"] == FORMAT_VERSION
    assert ckpt.metadata["plugins"]["ood-core"] == ood_core.__version__
    assert ckpt.input_shape == [None, 1, 6, 6]
    assert ckpt.example_input.shape[0] == 2  # a batch of 1 was repeated to 2 for tracing
    for batch in (1, 5, 33):  # dynamic batch, eval-mode BatchNorm
        x = torch.randn(batch, 1, 6, 6)
        torch.testing.assert_close(ckpt.model(x), model(x), rtol=1e-5, atol=1e-6)
    assert ckpt.model.eval() is ckpt.model and not ckpt.model.training  # eval() is accepted
    with pytest.raises(RuntimeError, match="cannot be switched to training mode"):
        ckpt.model.train()
    loss = ckpt.build_loss()
    assert isinstance(loss, CrossEntropyLoss) and loss.reduction == "sum"
    # the archive is also a plain PT2 archive
    with open(path, "rb") as f:
        program = torch.export.load(f)
    assert program.module()(torch.randn(3, 1, 6, 6)).shape == (3, 3)


def test_no_temp_files_left(saved: tuple[Path, nn.Module]) -> None:
    path, _ = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_mchad_state_and_kwargs_from_get_config(tmp_path: Path) -> None:
    pytest.importorskip("ood_plugin_mchad")
    loss = ood_core.create_loss("mchad", n_classes=3, n_dim=2, radius=0.5, margin=1.5)
    with torch.no_grad():
        loss.centers.params.add_(1.0)
    path = ood_core.save(
        tmp_path / "m.pt", nn.Linear(4, 2), loss=loss, example_input=torch.randn(4, 4)
    )
    ckpt = ood_core.load(path)
    assert ckpt.loss_kwargs == loss.get_config()  # the recorded constructor call, defaults too
    assert ckpt.loss_kwargs["n_classes"] == 3 and ckpt.loss_kwargs["radius"] == 0.5
    assert ckpt.metadata["loss"]["kwargs_from"] == "get_config()"
    assert ckpt.metadata["loss"]["name"] == "mchad"
    rebuilt = ckpt.build_loss()
    assert type(rebuilt) is type(loss)
    torch.testing.assert_close(rebuilt.centers.params, loss.centers.params)
    assert ckpt.metadata["plugins"]["ood-plugin-mchad"]


def test_get_config_and_explicit_kwargs(tmp_path: Path) -> None:
    class Configured(CrossEntropyLoss):
        def get_config(self) -> dict:
            return {"reduction": "none"}

    ckpt = ood_core.load(
        ood_core.save(tmp_path / "a.pt", nn.Linear(3, 2), Configured(), torch.randn(2, 3))
    )
    assert ckpt.loss_kwargs == {"reduction": "none"}
    assert ckpt.metadata["loss"]["kwargs_from"] == "get_config()"
    assert ckpt.metadata["loss"]["name"] == "cross-entropy"  # a subclass saves as its base
    path = ood_core.save(
        tmp_path / "b.pt",
        nn.Linear(3, 2),
        CrossEntropyLoss(),
        torch.randn(2, 3),
        loss_kwargs={"reduction": "mean"},
    )
    assert ood_core.load(path).metadata["loss"]["kwargs_from"] == "loss_kwargs"
    with pytest.raises(CheckpointError, match="would not rebuild"):
        ood_core.save(
            tmp_path / "c.pt",
            nn.Linear(3, 2),
            CrossEntropyLoss(),
            torch.randn(2, 3),
            loss_kwargs={"no_such_keyword": 1},
        )
    assert not (tmp_path / "c.pt").exists()


class _Weighted(CrossEntropyLoss):
    def __init__(self, weight_fn=None) -> None:  # noqa: ANN001 - a callable: not JSON
        super().__init__()
        self.weight_fn = weight_fn


@pytest.mark.parametrize(
    ("loss_kwargs", "match"),
    [
        (None, r"weight_fn=<function> cannot be recorded as JSON.*loss_kwargs="),
        ({"reduction": float("nan")}, "must be JSON values"),
        ({"reduction": object()}, "must be JSON values"),
    ],
)
def test_loss_keywords_that_cannot_be_written_are_refused(
    tmp_path: Path, loss_kwargs: dict | None, match: str
) -> None:
    with pytest.raises(CheckpointError, match=match):
        ood_core.save(
            tmp_path / "x.pt",
            nn.Linear(3, 2),
            _Weighted(weight_fn=lambda t: t),
            torch.randn(2, 3),
            loss_kwargs=loss_kwargs,
        )
    assert not list(tmp_path.iterdir())


class PlainCE(nn.CrossEntropyLoss):
    """A third-party loss: a plain nn.Module, not an ood_core.Loss (no recorded config)."""


@pytest.fixture
def plain_ce_registered():
    from ood_core.registry import Registry, set_registry
    from ood_core.testing.fakes import fake_plugin, loss_registration

    plugin = fake_plugin(losses=[loss_registration(name="plain-ce", target=f"{__name__}:PlainCE")])
    old = set_registry(Registry.from_plugins({"third-party": plugin}))
    yield
    set_registry(old)


def test_a_loss_that_is_not_an_ood_core_loss_needs_loss_kwargs(
    tmp_path: Path, plain_ce_registered: None
) -> None:
    loss = PlainCE(reduction="sum")
    with pytest.raises(CheckpointError) as info:
        ood_core.save(tmp_path / "x.pt", nn.Linear(3, 2), loss, torch.randn(2, 3))
    message = str(info.value)
    assert "PlainCE is not an ood_core.Loss" in message
    assert "Derive it from ood_core.Loss" in message and "loss_kwargs=" in message
    assert not list(tmp_path.iterdir())  # nothing guessed from attributes, nothing written
    path = ood_core.save(
        tmp_path / "x.pt",
        nn.Linear(3, 2),
        loss,
        torch.randn(2, 3),
        loss_kwargs={"reduction": "sum"},
    )
    ckpt = ood_core.load(path)
    assert ckpt.loss_name == "plain-ce" and ckpt.metadata["loss"]["kwargs_from"] == "loss_kwargs"
    rebuilt = ckpt.build_loss()
    assert type(rebuilt) is PlainCE and rebuilt.reduction == "sum"


_NO_SCAN = """
import sys, torch, ood_core
from torch import nn
from ood_core.registry import get_registry
loss = ood_core.create_loss("mchad", n_classes=3, n_dim=2)
plugins = {i.target.split(".")[0] for i in get_registry().items("loss")} - {"ood_core"}
before = set(sys.modules)
path = ood_core.save(sys.argv[1], nn.Linear(4, 2), loss, torch.randn(2, 4))
ood_core.load(path).build_loss()
new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in plugins)
print(len(plugins), "new:" + ",".join(new))
"""


def test_saving_imports_no_other_plugin(tmp_path: Path) -> None:
    pytest.importorskip("ood_plugin_mchad")
    run = subprocess.run(
        [sys.executable, "-c", _NO_SCAN, str(tmp_path / "m.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    n_plugins, new = run.stdout.strip().splitlines()[-1].split(" new:")
    assert int(n_plugins) > 1, "needs plugins besides mchad installed to mean anything"
    assert new == "", f"save/load imported other plugins' modules: {new}"


class TinyResNet(nn.Module):
    """torchvision-style classifier: conv body, ``avgpool``, flatten, ``fc`` (not edited)."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MultiHead(nn.Module):
    """A model returning a dict of named outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.embed = nn.Linear(4, 2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = torch.relu(self.conv(x))
        features = maps.mean(dim=(2, 3))
        return {
            "logits": self.fc(features),
            "features": features,
            "embedding": self.embed(features),
            "feature_maps": maps,
        }


def _tapped() -> nn.Module:
    return ood_core.tap(TinyResNet(), features="avgpool", feature_maps="bn1")


_MODELS = {
    "tensor": (Net, ("logits",)),
    "dict": (MultiHead, ("logits", "features", "embedding", "feature_maps")),
    "tapped": (_tapped, ("logits", "features", "feature_maps")),
}


def _same_output(a, b) -> None:  # noqa: ANN001
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(_MODELS))
def test_save_load_save_load(tmp_path: Path, kind: str) -> None:
    from ood_core.resolve import model_outputs

    build, names = _MODELS[kind]
    torch.manual_seed(0)
    model = build().eval()
    loss = ood_core.create_loss("cross-entropy", reduction="sum")
    first = ood_core.load(
        ood_core.save(
            tmp_path / "1.pt", model, loss, torch.rand(2, 1, 6, 6), ["a", "b", "c"], {"n": 1}
        )
    )
    again = ood_core.load(
        ood_core.save(
            tmp_path / "2.pt",
            first.model,
            first.build_loss(),
            first.example_input,
            first.classes,
            first.metadata["extra"],
        )
    )
    for batch in (1, 5):  # the batch dimension stays dynamic through both round trips
        x = torch.rand(batch, 1, 6, 6)
        with torch.no_grad():
            expected = model(x)
        _same_output(first.model(x), expected)
        _same_output(again.model(x), expected)
    drop = lambda m: {k: v for k, v in m.items() if k != "created"}  # noqa: E731
    assert drop(again.metadata) == drop(first.metadata)
    assert first.metadata["model"]["class"].endswith(type(model).__qualname__)
    assert model_outputs(first) == model_outputs(again) == names  # what resolve_scorer reads
    assert again.loss_kwargs == {"reduction": "sum"} and again.classes == ["a", "b", "c"]


def test_tapped_classifier_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TinyResNet().eval()
    tapped = ood_core.tap(net, features="avgpool").eval()
    ckpt = ood_core.load(ood_core.save(tmp_path / "t.pt", tapped, None, torch.rand(2, 1, 6, 6)))
    x = torch.rand(4, 1, 6, 6)
    out = ckpt.model(x)
    with torch.no_grad():
        pooled = net.avgpool(torch.relu(net.bn1(net.conv1(x)))).flatten(1)
        torch.testing.assert_close(out["logits"], net(x))
    torch.testing.assert_close(out["features"], pooled)  # (B, C): flattened from (B, C, 1, 1)
    assert ckpt.metadata["model"]["output"] == {
        "kind": "dict",
        "keys": {
            "logits": {"kind": "tensor", "shape": [None, 3]},
            "features": {"kind": "tensor", "shape": [None, 4]},
        },
    }


_GOOD_OUTPUT = {"kind": "dict", "keys": {"logits": {"kind": "tensor", "shape": [None, 3]}}}


@pytest.mark.parametrize(
    "output",
    [
        "logits",
        {"kind": "dict", "keys": "abc"},  # would read as the outputs a, b, c
        {"kind": "dict", "keys": ["logits"]},
        {"kind": "dict", "keys": {"logits": 5}},
        {"kind": "dict", "keys": {"": {"kind": "tensor", "shape": [None, 3]}}},
        {"kind": "dict", "keys": {"lo\ngits": {"kind": "tensor", "shape": [None, 3]}}},
        {"kind": "dict"},
        {"kind": "tensor", "shape": [3]},
        {"kind": "tensor", "shape": [None, -1]},
        {"kind": "tensor", "shape": [None, 3], "code": "__import__('os')"},
        {"kind": "tuple", "items": {"0": {"kind": "tensor", "shape": [None]}}},
        {"kind": "no such kind!"},
        {"kind": ["dict"]},
        {"keys": {"logits": {"kind": "tensor", "shape": [None, 3]}}},
        {"kind": "dict", "keys": {"logits": {"kind": "dict", "keys": {"x": {"kind": 1}}}}},
    ],
)
def test_malformed_output_description_refused(
    saved: tuple[Path, nn.Module], tmp_path: Path, output: object
) -> None:
    def edit(value: object):  # noqa: ANN202
        def rewrite(name: str, data: bytes) -> bytes:
            if name.endswith(MANIFEST):
                manifest = json.loads(data)
                manifest["model"]["output"] = value
                return json.dumps(manifest).encode()
            return data

        return rewrite

    good = tmp_path / "good.pt"
    _rewrite(saved[0], good, edit(_GOOD_OUTPUT))
    assert ood_core.load(good).metadata["model"]["output"] == _GOOD_OUTPUT
    bad = tmp_path / "bad.pt"
    _rewrite(saved[0], bad, edit(output))
    with pytest.raises(CheckpointError, match=r"model\.output"):
        ood_core.load(bad)


def test_output_names_load_would_refuse_are_not_written(tmp_path: Path) -> None:
    class OddName(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits\n": x * 2}

    with pytest.raises(CheckpointError, match=r"save: manifest: field 'model\.output\.keys'"):
        ood_core.save(tmp_path / "x.pt", OddName(), example_input=torch.randn(2, 3))
    assert not list(tmp_path.iterdir())


def test_unregistered_loss_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a registered oodx loss"):
        ood_core.save(tmp_path / "x.pt", nn.Linear(3, 2), nn.MSELoss(), torch.randn(2, 3))
    assert not list(tmp_path.iterdir())


def test_untraceable_model_is_a_clear_error(tmp_path: Path) -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x  # data-dependent Python control flow

    with pytest.raises(CheckpointError, match="torch.export could not trace Branchy"):
        ood_core.save(tmp_path / "x.pt", Branchy(), example_input=torch.randn(2, 3))
    assert not list(tmp_path.iterdir())


def test_pickled_module_refused_then_trusted(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save(Net(), path)
    with pytest.raises(CheckpointError) as info:
        ood_core.load(path)
    message = str(info.value)
    assert "runs arbitrary code" in message and "ood_core.save(" in message
    assert "trust_pickle=True" in message and "--trust-pickle" in message
    ckpt = ood_core.load(path, trust_pickle=True)
    assert ckpt.source == "pickle" and isinstance(ckpt.model, Net) and ckpt.loss_name is None
    with pytest.raises(CheckpointError, match="has no loss"):
        ckpt.build_loss()
    legacy = tmp_path / "legacy.pt"
    torch.save(Net(), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy torch.save pickle"):
        ood_core.load(legacy)
    state = tmp_path / "state.pt"
    torch.save(Net().state_dict(), state)
    with pytest.raises(CheckpointError, match="not a torch.nn.Module"):
        ood_core.load(state, trust_pickle=True)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9, 0.999])
def test_truncated_checkpoint(
    saved: tuple[Path, nn.Module], tmp_path: Path, fraction: float
) -> None:
    data = saved[0].read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"truncated|empty|corrupted") as info:
        ood_core.load(bad)
    assert info.value.__cause__ is None  # no chained traceback from deep inside torch/zipfile


def test_corrupted_member(saved: tuple[Path, nn.Module], tmp_path: Path) -> None:
    data = bytearray(saved[0].read_bytes())
    with zipfile.ZipFile(saved[0]) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("weight_0"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + 8] = b"\xff" * 8  # flip weight bytes: the CRC no longer matches
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        ood_core.load(bad)


def test_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not an oodx checkpoint"):
        ood_core.load(text)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="not an oodx checkpoint"):
        ood_core.load(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        ood_core.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="folder"):
        ood_core.load(tmp_path)


def test_newer_format_and_broken_manifest(saved: tuple[Path, nn.Module], tmp_path: Path) -> None:
    def bump(name: str, data: bytes) -> bytes:
        if name.endswith(MANIFEST):
            manifest = json.loads(data)
            manifest["format_version"] = FORMAT_VERSION + 1
            return json.dumps(manifest).encode()
        return data

    newer = tmp_path / "newer.pt"
    _rewrite(saved[0], newer, bump)
    with pytest.raises(CheckpointError, match="Upgrade ood-core"):
        ood_core.load(newer)
    broken = tmp_path / "broken.pt"
    _rewrite(saved[0], broken, lambda n, d: b"{not json" if n.endswith(MANIFEST) else d)
    with pytest.raises(CheckpointError, match="unreadable"):
        ood_core.load(broken)


def test_plain_pt2_accepted(tmp_path: Path) -> None:
    model = nn.Linear(3, 2).eval()
    dim = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.randn(2, 3),), dynamic_shapes=({0: dim},))
    path = tmp_path / "plain.pt2"
    torch.export.save(program, path)
    ckpt = ood_core.load(path)
    assert ckpt.source == "pt2" and ckpt.loss_name is None and ckpt.loss_state == {}
    assert ckpt.input_shape == [None, 3]
    torch.testing.assert_close(ckpt.model(torch.ones(4, 3)), model(torch.ones(4, 3)))


def test_pickled_weights_inside_pt2_refused(saved: tuple[Path, nn.Module], tmp_path: Path) -> None:
    def pickled(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    bad = tmp_path / "pickled_weights.pt"
    _rewrite(saved[0], bad, pickled)
    with pytest.raises(CheckpointError, match="stored as a pickle"):
        ood_core.load(bad)


def test_save_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="example_input"):
        ood_core.save(tmp_path / "x.pt", nn.Linear(3, 2))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ood_core.save(tmp_path / "x.pt", "model", example_input=torch.randn(2, 3))
    with pytest.raises(CheckpointError, match="folder"):
        ood_core.save(tmp_path, nn.Linear(3, 2), example_input=torch.randn(2, 3))
