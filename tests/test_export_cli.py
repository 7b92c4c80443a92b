"""`oodx export`, `oodx score`, `oodx inspect`: results, messages, no tracebacks on mistakes."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ood_core

pytest.importorskip("onnxruntime")
pytest.importorskip("ood_exporter_onnx")
try:
    import oodx.commands.export  # noqa: F401
except ImportError:  # the cli distribution is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from click.testing import CliRunner  # noqa: E402

from oodx.commands.export import export, inspect, score  # noqa: E402


class ImageNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = ImageNet().eval()
    ckpt = ood_core.save(
        tmp / "model.pt",
        model,
        loss=ood_core.create_loss("cross-entropy"),
        example_input=torch.rand(2, 3, 8, 8),
        classes=["cat", "dog", "eel"],
    )
    rng = np.random.default_rng(0)
    np.save(tmp / "id.npy", rng.random((50, 3, 8, 8), dtype=np.float32))
    np.save(tmp / "test.npy", rng.random((10, 3, 8, 8), dtype=np.float32))
    torch.save(model, tmp / "pickled.pt")
    result = CliRunner().invoke(
        export,
        [
            str(ckpt),
            "--scorer",
            "energy",
            "-o",
            str(tmp / "model.onnx"),
            "--calibrate",
            str(tmp / "id.npy"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "verified in onnxruntime" in result.output and "threshold" in result.output
    return {"tmp": tmp, "ckpt": ckpt, "onnx": tmp / "model.onnx"}


def _mistake(result, *needles: str) -> None:  # noqa: ANN001
    assert result.exit_code != 0
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    ), result.output
    assert "Error:" in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_help_has_examples() -> None:
    for command in (export, score, inspect):
        result = CliRunner().invoke(command, ["--help"])
        assert result.exit_code == 0 and "Examples:" in result.output


def test_export_default_output_name(files: dict[str, Path]) -> None:
    other = files["tmp"] / "other.pt"
    other.write_bytes(files["ckpt"].read_bytes())
    result = CliRunner().invoke(export, [str(other), "-s", "msp", "--opset", "18"])
    assert result.exit_code == 0, result.output
    assert other.with_suffix(".onnx").exists()


def test_export_mistakes(files: dict[str, Path]) -> None:
    tmp, runner = files["tmp"], CliRunner()
    _mistake(
        runner.invoke(export, [str(tmp / "pickled.pt"), "-s", "msp"]),
        "runs arbitrary code",
        "--trust-pickle",
    )
    cut = tmp / "cut.pt"
    cut.write_bytes(files["ckpt"].read_bytes()[:5000])
    _mistake(runner.invoke(export, [str(cut), "-s", "msp"]), "truncated")
    scorers = {s.name for s in ood_core.list_scorers()}
    if "mchad" in scorers:  # an embedding scorer for a classifier
        _mistake(
            runner.invoke(export, [str(files["ckpt"]), "-s", "mchad"]), "the model outputs logits"
        )
    if "scone" in scorers:
        _mistake(runner.invoke(export, [str(files["ckpt"]), "-s", "scone"]), "needs state")
    _mistake(runner.invoke(export, [str(files["ckpt"]), "-s", "msp", "--opset", "17"]), "18")
    _mistake(runner.invoke(export, [str(files["ckpt"]), "-s", "no-such"]), "no scorer named")
    _mistake(runner.invoke(export, [str(files["ckpt"]), "-s", "msp", "--input-shape", "a,b"]))
    assert not (tmp / "cut.onnx").exists() and not (tmp / "pickled.onnx").exists()


def test_export_without_scorer_uses_the_natural_one(files: dict[str, Path]) -> None:
    out = files["tmp"] / "natural.onnx"
    result = CliRunner().invoke(export, [str(files["ckpt"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "scorer msp" in result.output  # cross-entropy's natural scorer
    from ood_exporter_onnx import OnnxModel

    assert OnnxModel(out).metadata["scorer"] == "msp"


def test_export_refuses_a_scorer_the_outputs_cannot_feed(files: dict[str, Path]) -> None:
    pytest.importorskip("ood_plugin_mchad")
    torch.manual_seed(0)
    embedder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    ckpt = ood_core.save(
        files["tmp"] / "mchad.pt",
        embedder,
        loss=ood_core.create_loss("mchad", n_classes=3, n_dim=4),
        example_input=torch.rand(2, 3, 8, 8),
    )
    out = files["tmp"] / "mchad-energy.onnx"
    result = CliRunner().invoke(export, [str(ckpt), "--scorer", "energy", "-o", str(out)])
    assert result.exit_code == 1
    _mistake(result, "scorer 'energy' reads logits but the model outputs embedding")
    assert not out.exists()
    natural = CliRunner().invoke(export, [str(ckpt), "-o", str(out)])
    assert natural.exit_code == 0, natural.output
    assert "scorer mchad (from the trained loss 'mchad')" in natural.output


def test_export_trusted_pickle(files: dict[str, Path]) -> None:
    out = files["tmp"] / "from_pickle.onnx"
    args = [str(files["tmp"] / "pickled.pt"), "-s", "entropy", "-o", str(out), "--trust-pickle"]
    _mistake(CliRunner().invoke(export, args), "--input-shape")
    result = CliRunner().invoke(export, [*args, "--input-shape", "3,8,8"])
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_inspect(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(inspect, [str(files["onnx"])])
    assert result.exit_code == 0, result.output
    text = result.output
    for needle in (
        "input: float[batch, 3, 8, 8]",
        "score: float[batch]",
        "prediction: int64[batch]",
        "scorer: energy",
        "higher-is-ood",
        "classes (3): cat, dog, eel",
        "threshold:",
        "trained with loss: cross-entropy",
    ):
        assert needle in text, text
    data = json.loads(CliRunner().invoke(inspect, [str(files["onnx"]), "--json"]).output)
    assert data["oodx"]["scorer"] == "energy" and data["inputs"]["input"] == "float[batch, 3, 8, 8]"
    ckpt = CliRunner().invoke(inspect, [str(files["ckpt"])])
    assert ckpt.exit_code == 0, ckpt.output
    assert "oodx checkpoint" in ckpt.output and "loss: cross-entropy" in ckpt.output
    assert "classes (3): cat, dog, eel" in ckpt.output
    pickled = CliRunner().invoke(inspect, [str(files["tmp"] / "pickled.pt")])
    assert "--trust-pickle" in pickled.output
    junk = files["tmp"] / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    _mistake(CliRunner().invoke(inspect, [str(junk)]), "not a readable ONNX file")


def test_score_csv_with_threshold(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        score, [str(files["onnx"]), str(files["tmp"] / "test.npy"), "--batch-size", "3"]
    )
    assert result.exit_code == 0, result.output
    stdout = result.stdout
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 10 and set(rows[0]) == {"input", "score", "prediction", "class", "is_ood"}
    from ood_exporter_onnx import OnnxModel

    runner = OnnxModel(files["onnx"])
    expected = runner.run(np.load(files["tmp"] / "test.npy"))
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected["score"], rtol=1e-6)
    assert [int(r["is_ood"]) for r in rows] == list(
        (expected["score"] > runner.threshold).astype(int)
    )
    assert "scoring 10 inputs" in result.stderr  # progress bar on stderr (4 batches)


def test_score_npz_and_images(files: dict[str, Path]) -> None:
    pil = pytest.importorskip("PIL.Image")
    tmp = files["tmp"]
    out = tmp / "scores.npz"
    result = CliRunner().invoke(score, [str(files["onnx"]), str(tmp / "test.npy"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert set(data.files) >= {"score", "prediction", "output", "is_ood"}
        assert data["score"].shape == (10,)
    folder = tmp / "images"
    folder.mkdir()
    for i in range(3):
        pil.fromarray((np.random.default_rng(i).random((12, 10, 3)) * 255).astype(np.uint8)).save(
            folder / f"img{i}.png"
        )
    result = CliRunner().invoke(
        score, [str(files["onnx"]), str(folder), "-o", str(tmp / "img.csv")]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp / "img.csv")))
    assert [r["input"] for r in rows] == ["img0.png", "img1.png", "img2.png"]


def test_score_mistakes(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, runner = files["tmp"], CliRunner()
    np.save(tmp / "wrong.npy", np.zeros((4, 5), np.float32))
    _mistake(runner.invoke(score, [str(files["onnx"]), str(tmp / "wrong.npy")]), "shape")
    _mistake(
        runner.invoke(score, [str(files["onnx"]), str(tmp / "test.npy"), "-o", "x.txt"]), ".csv"
    )
    (tmp / "empty").mkdir(exist_ok=True)
    _mistake(runner.invoke(score, [str(files["onnx"]), str(tmp / "empty")]), "no images")
    monkeypatch.setitem(sys.modules, "PIL", None)
    _mistake(runner.invoke(score, [str(files["onnx"]), str(tmp / "empty")]), "pip install pillow")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    _mistake(
        runner.invoke(score, [str(files["onnx"]), str(tmp / "test.npy")]),
        'pip install "ood-runtime[cpu]"',
    )


def test_score_cuda_fallback(files: dict[str, Path]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    args = [str(files["onnx"]), str(files["tmp"] / "test.npy"), "--device", "cuda"]
    result = CliRunner().invoke(score, args)
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.stderr and "runs on the CPU" in result.stderr
    _mistake(CliRunner().invoke(score, [*args, "--require-gpu"]), "runs on the CPU", "[gpu]")


def test_oodx_group_runs_export_help() -> None:
    import importlib.util
    import subprocess

    if importlib.util.find_spec("oodx.main") is None:
        pytest.skip("the oodx command group is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "oodx", "export", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "oodx export model.pt --scorer mchad" in result.stdout


@pytest.mark.parametrize(
    ("command", "hidden", "install"),
    [
        ("export", "ood_core", "oodx[train]"),
        ("export", "ood_exporter_onnx", "oodx[train]"),
        ("plugins", "ood_core", "oodx[train]"),
        ("demo", "ood_exporter_onnx", "oodx[demo]"),
        ("score", "ood_runtime", "ood-runtime[cpu]"),
    ],
)
def test_missing_package_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, command: str, hidden: str, install: str
) -> None:
    import importlib.util

    from oodx.main import cli

    if command != "score":  # the command may already be imported in this process (cached)
        CliRunner().invoke(cli, [command, "--help"])
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == hidden else find_spec(name, *a),
    )
    result = CliRunner().invoke(cli, [command, "x"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and install in lines[0], lines
    assert hidden in lines[0]
