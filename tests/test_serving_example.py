"""The serving example of docs/export.md runs in a fresh virtual environment without torch.

The wheels of ``runtime/`` and ``cli/`` are built and installed as a user would
(``pip install "ood-runtime[cpu,images]" oodx``; their dependencies come from the package
index), ``import torch`` must fail there, and the documented script, ``oodx score``, ``eval``
and ``inspect`` run a raw-image model exported (with torch) outside.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ood_core

pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")
from ood_exporter_onnx import export_onnx  # noqa: E402
from ood_runtime import OnnxModel, load_inputs  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SIZE = 16


def _doc_script() -> str:
    text = (REPO / "docs" / "export.md").read_text()
    match = re.search(r"<!-- serving-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/export.md lost its serving example"
    return match.group(1)


@pytest.fixture(scope="module")
def serving(wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("serving")
    runtime_wheel, cli_wheel = wheelhouse.build("runtime"), wheelhouse.build("cli")
    venv_class = sys.modules[type(wheelhouse).__module__].Venv  # tests/conftest.py's helper
    env = venv_class(tmp / "env")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env.path)
    env.pip(
        "install", "--find-links", runtime_wheel.parent, f"{runtime_wheel}[cpu,images]", cli_wheel
    )
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    ckpt = ood_core.save(
        tmp / "m.pt",
        net,
        loss=ood_core.create_loss("cross-entropy"),
        example_input=torch.randn(2, 3, SIZE, SIZE),
        extra={"dataset": "toy"},
    )
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, SIZE * 2, dtype=np.float32)
    cal = (smooth[None, :, None, None] * rng.uniform(0.5, 1, (64, 1, 1, 3))).astype(np.uint8)
    cal = np.repeat(cal, SIZE * 2, axis=2)[:, :, : SIZE * 2]
    export_onnx(
        ckpt,
        "energy",
        tmp / "model.onnx",
        input_format="uint8-nhwc",
        mean=0.5,
        std=0.25,
        resize=(SIZE, SIZE),
        calibrate=cal,
        tpr=0.9,
    )
    from PIL import Image

    (tmp / "all").mkdir()
    for name, arrays in (("id", cal[:6]), ("ood", rng.integers(0, 256, (6, 24, 40, 3), np.uint8))):
        (tmp / name).mkdir()
        for i, a in enumerate(arrays):
            for folder in (name, "all"):
                Image.fromarray(a).save(tmp / folder / f"{name}{i}.png")
    (tmp / "serve.py").write_text(_doc_script())
    return {"env": env, "tmp": tmp, "model": tmp / "model.onnx"}


def test_no_torch_in_the_serving_venv(serving: dict) -> None:
    proc = serving["env"].run_python("import torch", check=False)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr
    proc = serving["env"].run_python("import ood_core", check=False)
    assert proc.returncode != 0


def test_doc_example_prints_the_flagged_images(serving: dict) -> None:
    env, tmp = serving["env"], serving["tmp"]
    out = env.run("python", tmp / "serve.py", serving["model"], tmp / "all").stdout
    model = OnnxModel(serving["model"])
    images, names = load_inputs(
        tmp / "all", model.input_shape, preprocess=model.preprocess, resize_mode="center-crop"
    )
    flags = model.run(images)["is_ood"]
    expected = [n for n, f in zip(names, flags) if f]
    assert re.findall(r"^OOD (\S+)", out, re.M) == expected
    assert f"{len(expected)} of {len(names)} flagged" in out
    assert expected, "the noise images should be flagged"


def test_oodx_score_eval_inspect_without_torch(serving: dict) -> None:
    env, tmp, model = serving["env"], serving["tmp"], serving["model"]
    rows = list(csv.DictReader(io.StringIO(env.run("oodx", "score", model, tmp / "all").stdout)))
    assert len(rows) == 12 and {r["is_ood"] for r in rows} <= {"0", "1"}
    metrics = json.loads(
        env.run("oodx", "eval", model, "--id", tmp / "id", "--ood", tmp / "ood", "--json").stdout
    )["metrics"]["ood"]
    assert set(metrics) >= {"AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR"}
    info = json.loads(env.run("oodx", "inspect", model, "--json").stdout)
    assert info["oodx"]["extra"] == {"dataset": "toy"} and info["oodx"]["threshold_tpr"] == 0.9
    assert info["outputs"]["is_ood"].startswith("bool")


def test_training_commands_name_the_extra(serving: dict) -> None:
    env = serving["env"]
    proc = subprocess.run(
        [env.bin("oodx"), "export", str(serving["tmp"] / "m.pt")], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "oodx[train]" in lines[0], lines
