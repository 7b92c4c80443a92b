"""End to end: train with an oodx loss, ood_core.save, `oodx export` in a fresh process, compare.

The CNN is defined here, in the test module, which the export subprocess cannot import: the
checkpoint has to carry everything. The ONNX scores must equal the eager PyTorch ones (the
trained model object and the loss's scorer) to 1e-5 at batch sizes 1, 7 and 64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ood_core

pytest.importorskip("onnxruntime")
pytest.importorskip("ood_exporter_onnx")

from ood_exporter_onnx import OnnxModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOL = {"rtol": 1e-5, "atol": 1e-5}
SHAPE = (1, 12, 12)


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head; ``out`` logits or embedding dimensions."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three ID classes (a bright row band, column band or corner) and OOD noise (target -1)."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, *SHAPE, generator=gen)
    y = torch.arange(n) % 4 - 1  # -1, 0, 1, 2
    x[y == 0, :, 3:6, :] += 2.0
    x[y == 1, :, :, 3:6] += 2.0
    x[y == 2, :, 7:, 7:] += 2.0
    x[y == -1] += torch.randn(int((y == -1).sum()), *SHAPE, generator=gen)
    return x, y


def _train(model: nn.Module, loss: nn.Module, feed, steps: int = 15) -> None:  # noqa: ANN001
    params = [*model.parameters(), *loss.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for step in range(steps):
        x, y = _data(64, seed=step)
        value = feed(model(x), y)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Checkpoints of an MCHAD CNN and a cross-entropy CNN, and their eager references."""
    pytest.importorskip("ood_plugin_mchad")
    tmp = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    mchad_model = SmallCNN(out=2)
    mchad = ood_core.create_loss("mchad", n_classes=3, n_dim=2, radius=0.5, margin=1.0)
    _train(mchad_model, mchad, lambda z, y: mchad(mchad.distance(z), y))
    ce_model = SmallCNN(out=3)
    ce = ood_core.create_loss("cross-entropy")
    _train(ce_model, ce, lambda logits, y: ce(logits, y))
    example = _data(1, seed=99)[0]  # a batch of 1: save repeats it to 2 for tracing
    ood_core.save(tmp / "mchad.pt", mchad_model, loss=mchad, example_input=example)
    ood_core.save(tmp / "ce.pt", ce_model, loss=ce, example_input=example, classes=["a", "b", "c"])
    return {
        "tmp": tmp,
        "models": {"mchad": mchad_model, "ce": ce_model},
        "scorers": {
            "mchad": mchad.scorer().eval(),
            "energy": ood_core.create_scorer("energy"),
            "msp": ood_core.create_scorer("msp"),
        },
    }


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO / "cli")  # the oodx package, not the tests folder
    return env


# `oodx export ARGS...` for each argument list, in one fresh process (click, no standalone exit)
CLI = (
    "import sys, json\n"
    "from oodx.commands.export import export\n"
    "for args in json.loads(sys.argv[1]):\n"
    "    export.main(args, prog_name='oodx export', standalone_mode=False)\n"
)
JOBS = {  # onnx name -> (checkpoint, scorer, model)
    "mchad": ("mchad.pt", "mchad", "mchad"),
    "energy": ("ce.pt", "energy", "ce"),
    "msp": ("ce.pt", "msp", "ce"),
}
PROCESSES = (("mchad",), ("energy", "msp"))  # two processes in parallel


@pytest.fixture(scope="module")
def exported(trained: dict) -> dict[str, Path]:
    """`oodx export CKPT --scorer S -o NAME.onnx` for each job, in fresh processes."""
    tmp: Path = trained["tmp"]
    module = SmallCNN.__module__
    check = subprocess.run(  # the subprocess really cannot import the training classes
        [
            sys.executable,
            "-c",
            f"import importlib\ntry:\n importlib.import_module({module!r})\n print('importable')"
            "\nexcept ImportError:\n print('None')",
        ],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=_cli_env(),
        timeout=60,
    )
    assert check.stdout.strip() == "None", check.stdout + check.stderr
    procs = {}
    for names in PROCESSES:
        argv = [[JOBS[n][0], "--scorer", JOBS[n][1], "-o", f"{n}.onnx"] for n in names]
        procs[names] = subprocess.Popen(
            [sys.executable, "-c", CLI, json.dumps(argv)],
            cwd=tmp,
            env=_cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    out = {}
    for names, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"export {names} failed:\n{stdout}\n{stderr}"
        assert stdout.count("verified in onnxruntime") == len(names), stdout
        assert "Traceback" not in stderr
        for name in names:
            out[name] = tmp / f"{name}.onnx"
    return out


@pytest.mark.parametrize("name", list(JOBS))
def test_onnx_matches_pytorch(name: str, trained: dict, exported: dict[str, Path]) -> None:
    _, scorer_name, model_name = JOBS[name]
    model, scorer = trained["models"][model_name], trained["scorers"][scorer_name]
    path = exported[name]
    assert path.stat().st_size > 0 and not Path(f"{path}.data").exists()  # one file
    runner = OnnxModel(path)
    assert runner.metadata["scorer"] == scorer_name
    for batch in (1, 7, 64):
        x, _ = _data(batch, seed=1000 + batch)
        got = runner.run(x)
        with torch.no_grad():
            out = model(x)
            score, pred = scorer(out), scorer.predict(out)
        np.testing.assert_allclose(got["output"], out.numpy(), **TOL)
        np.testing.assert_allclose(got["score"], score.numpy(), **TOL)
        np.testing.assert_array_equal(got["prediction"], pred.numpy())


def test_mchad_detects_ood(trained: dict, exported: dict[str, Path]) -> None:
    """The shipped graph keeps the trained centres: OOD noise scores higher than ID data."""
    x, y = _data(400, seed=12345)
    score = OnnxModel(exported["mchad"]).run(x)["score"]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score((y < 0).numpy(), score) > 0.8
