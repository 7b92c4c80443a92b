"""The exporter refuses scorers registered exportable=False (gradient / stochastic methods)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import ood_core

pytest.importorskip("ood_plugin_odin")
pytest.importorskip("ood_exporter_onnx")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    return ood_core.save(
        tmp_path_factory.mktemp("refuse") / "model.pt",
        model,
        loss=ood_core.create_loss("cross-entropy"),
        example_input=torch.rand(2, 3, 2, 2),
    )


def _refusal_ok(line: str, name: str) -> None:
    assert "\n" not in line.strip() and f"scorer {name!r} cannot be exported" in line, line
    assert "PyTorch only" in line and "msp" in line and "energy" in line, line
    assert "Traceback" not in line


@pytest.mark.parametrize("name", ["odin", "mc-dropout", "gradnorm", "grad-uncertainty"])
def test_export_onnx_refuses_by_name_and_as_module(ckpt: Path, tmp_path: Path, name: str) -> None:
    from ood_exporter_onnx import export_onnx
    from ood_exporter_onnx.errors import ExportError

    info = ood_core.get_info("scorer", name)
    pytest.importorskip(info.target.split(".")[0])
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError) as by_name:
        export_onnx(ckpt, name, out)
    _refusal_ok(str(by_name.value), name)
    module = ood_core.create_scorer(name, model=nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))
    with pytest.raises(ExportError, match="cannot be exported"):
        export_onnx(ckpt, module, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_oodx_export_refuses_in_one_line(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "oodx", "export", str(ckpt), "--scorer", "odin", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and not out.exists()
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    _refusal_ok(lines[0], "odin")
    assert "input gradient" in lines[0]


def test_scorers_listing_shows_exportability() -> None:
    from oodx.commands.listing import scorers

    table = CliRunner().invoke(scorers, [])
    header, *rows = table.output.splitlines()
    at = header.index("EXPORT")
    export = {ln.split()[0]: ln[at:].split()[0] for ln in rows if ln.strip()}
    assert export["odin"] == "no" and export["energy"] == "yes", table.output
    data = {d["name"]: d for d in json.loads(CliRunner().invoke(scorers, ["--json"]).output)}
    assert data["odin"]["exportable"] is False and data["msp"]["exportable"] is True
