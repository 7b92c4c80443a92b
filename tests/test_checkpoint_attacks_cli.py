"""`oodx export` and `oodx inspect` refuse every malicious checkpoint of the corpus, run no payload."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core

REPO = Path(__file__).resolve().parents[1]
OODX = REPO / ".venv" / "bin" / "oodx"
_spec = importlib.util.spec_from_file_location(
    "checkpoint_attacks", REPO / "ood_core" / "tests" / "checkpoint_attacks.py"
)
attacks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attacks)
NAMES = list(attacks.attacks("archive", Path, Path(".")))
# export imports torch (~4 s a run): the five attacks of the issue and the sympy eval
EXPORT_NAMES = [
    "legacy-weights",
    "legacy-constants",
    "duplicate-sample-inputs",
    "old-format-fallback",
    "aotinductor-so",
    "sympy-eval",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    work = tmp_path_factory.mktemp("cli_corpus")
    base = ood_core.save(
        work / "model.pt2", nn.Sequential(nn.Linear(4, 3)), example_input=torch.randn(2, 4)
    )
    return attacks.build_corpus(base, work / "files", work / "markers"), work / "markers"


def _check_refused(proc: subprocess.CompletedProcess, markers: Path) -> None:
    assert list(markers.iterdir()) == [], "a payload ran"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert "unexpected" not in proc.stderr and "a bug" not in proc.stderr, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize("name", NAMES)
def test_inspect_refuses(corpus: tuple[dict[str, Path], Path], name: str) -> None:
    files, markers = corpus
    proc = subprocess.run(
        [str(OODX), "inspect", str(files[name])], capture_output=True, text=True, timeout=120
    )
    _check_refused(proc, markers)


@pytest.mark.parametrize("name", EXPORT_NAMES)
def test_export_refuses(corpus: tuple[dict[str, Path], Path], name: str, tmp_path: Path) -> None:
    files, markers = corpus
    out = tmp_path / "out.onnx"
    proc = subprocess.run(
        [str(OODX), "export", str(files[name]), "-s", "msp", "-o", str(out), "--trust-pickle"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    _check_refused(proc, markers)
    assert not out.exists()
