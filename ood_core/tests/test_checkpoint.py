"""ood_core.save / ood_core.load: one self-contained file, no pickle, clear errors."""

from __future__ import annotations

import json
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


def test_mchad_state_and_kwargs_from_signature(tmp_path: Path) -> None:
    pytest.importorskip("ood_plugin_mchad")
    loss = ood_core.create_loss("mchad", n_classes=3, n_dim=2, radius=0.5, margin=1.5)
    with torch.no_grad():
        loss.centers.params.add_(1.0)
    path = ood_core.save(
        tmp_path / "m.pt", nn.Linear(4, 2), loss=loss, example_input=torch.randn(4, 4)
    )
    ckpt = ood_core.load(path)
    assert ckpt.loss_kwargs["n_classes"] == 3 and ckpt.loss_kwargs["n_dim"] == 2
    assert ckpt.loss_kwargs["radius"] == 0.5 and ckpt.loss_kwargs["margin"] == 1.5
    rebuilt = ckpt.build_loss()
    torch.testing.assert_close(rebuilt.centers.params, loss.centers.params)
    assert ckpt.metadata["loss"]["kwargs_from"] == "the constructor signature"
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
