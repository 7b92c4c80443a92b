"""``oodx eval``: metrics per OOD set from .npy arrays and image folders, plots, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from oodx.main import cli

pytest.importorskip("onnxruntime", reason="needs onnxruntime (ood-exporter-onnx[cpu])")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A tiny 3-class model on 1 x 8 x 8 images that gives bright images high confidence."""
    import torch

    import ood_core
    from ood_exporter_onnx import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 64) * 0.01 + torch.tensor([[0.06], [0.0], [-0.06]]))
        model[1].bias.zero_()
    root = tmp_path_factory.mktemp("eval-model")
    ckpt = ood_core.save(
        root / "tiny.pt2",
        model.eval(),
        ood_core.create_loss("cross-entropy"),
        example_input=torch.rand(2, 1, 8, 8),
        classes=["a", "b", "c"],
    )
    out = root / "tiny.onnx"
    export_onnx(ckpt, "msp", out)
    return out


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("eval-data")
    sets = {
        "id": (0.6 + 0.4 * rng.random((40, 1, 8, 8))).astype(np.float32),
        "dark": (0.3 * rng.random((30, 1, 8, 8))).astype(np.float32),
        "noise": rng.random((20, 1, 8, 8)).astype(np.float32),
    }
    paths = {}
    for name, value in sets.items():
        paths[name] = root / f"{name}.npy"
        np.save(paths[name], value)
    paths["labels"] = root / "labels.npy"
    np.save(paths["labels"], np.zeros(40, dtype=np.int64))
    return paths


def invoke(*args) -> object:
    return CliRunner().invoke(cli, ["eval", *map(str, args)])


def test_table_per_ood_set_matches_direct_metrics(onnx_model, arrays, tmp_path):
    from ood_core.metrics import OODMetrics
    from ood_exporter_onnx import OnnxModel

    result = invoke(
        onnx_model,
        "--id", arrays["id"],
        "--ood", arrays["dark"],
        "--ood", arrays["noise"],
        "--id-labels", arrays["labels"],
        "--plot", tmp_path / "plots",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(ln for ln in lines if ln.startswith("OOD SET"))
    assert header.split()[2:] == ["AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR", "ACC"]
    rows = {
        ln.split()[0]: ln.split()[1:]
        for ln in lines
        if ln.split()[:1] in (["dark"], ["noise"], ["all"])
    }
    assert set(rows) == {"dark", "noise", "all"}

    model = OnnxModel(onnx_model)
    id_run = model.run(np.load(arrays["id"]))
    dark = model.run(np.load(arrays["dark"]))["score"]
    metrics = OODMetrics()
    metrics.update(id_run["score"], np.zeros(40, dtype=np.int64), id_run["prediction"])
    metrics.update(dark, -np.ones(30, dtype=np.int64), np.zeros(30, dtype=np.int64))
    expected = metrics.compute()
    assert float(rows["dark"][0]) == pytest.approx(expected["AUROC"], abs=5e-5)
    assert float(rows["dark"][4]) == pytest.approx(expected["ACC"], abs=5e-5)
    for name in ("roc.png", "scores.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_json_output_and_no_acc_without_labels(onnx_model, arrays):
    result = invoke(onnx_model, "--id", arrays["id"], "--ood", arrays["dark"], "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["scorer"] == "msp" and data["n_id"] == 40 and data["n_ood"] == {"dark": 30}
    assert set(data["metrics"]) == {"dark"}
    assert set(data["metrics"]["dark"]) == {"AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR"}


def test_image_folders(onnx_model, arrays, tmp_path):
    image = pytest.importorskip("PIL.Image")
    for name in ("id", "dark"):
        folder = tmp_path / name
        folder.mkdir()
        for i, x in enumerate(np.load(arrays[name])[:10]):
            image.fromarray((x[0] * 255).astype(np.uint8)).resize((16, 16)).save(
                folder / f"{i}.png"
            )
    result = invoke(onnx_model, "--id", tmp_path / "id", "--ood", tmp_path / "dark", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n_id"] == 10 and data["n_ood"] == {"dark": 10}
    assert data["metrics"]["dark"]["AUROC"] > 0.9  # bright vs dark images


def test_user_mistakes_are_one_line_errors(onnx_model, arrays, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 3, 8, 8), dtype=np.float32))
    result = invoke(onnx_model, "--id", arrays["id"], "--ood", wrong)
    assert result.exit_code == 1 and "shape" in result.output and "Traceback" not in result.output

    result = invoke(
        onnx_model, "--id", arrays["id"], "--ood", arrays["dark"], "--id-labels", arrays["dark"]
    )
    assert result.exit_code == 1 and "--id-labels" in result.output

    result = invoke(onnx_model, "--id", tmp_path / "missing.npy", "--ood", arrays["dark"])
    assert result.exit_code == 2 and "does not exist" in result.output

    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    result = invoke(not_onnx, "--id", arrays["id"], "--ood", arrays["dark"])
    assert result.exit_code == 1 and "Traceback" not in result.output
