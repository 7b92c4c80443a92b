"""Smoke runs of every benchmark script, so that none of them rots.

Benchmarks are not tests: nothing here times anything or checks a speed. Each script runs as a
user would run it (a subprocess of the current interpreter), in its quick mode and without
writing into ``benchmarks/results/``.
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run_script(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


needs_reference = pytest.mark.skipif(
    importlib.util.find_spec("pytorch_ood") is None, reason="needs pytorch-ood 0.4.0"
)


def test_startup_smoke() -> None:
    out = run_script(BENCH / "startup.py", "--repeats", "1", "--no-write")
    assert "import torch" in out


@pytest.mark.skipif(not (BENCH / "export.py").exists(), reason="no export benchmark")
def test_export_smoke(tmp_path: Path) -> None:
    run_script(BENCH / "export.py", "--quick", "--output", tmp_path / "export.md")
    assert (tmp_path / "export.md").exists()


@needs_reference
def test_losses_smoke() -> None:
    # the eager backend exercises the compiled code path without code generation
    out = run_script(BENCH / "losses.py", "--quick", "--backend", "eager", "--no-write")
    assert "| cross-entropy" in out and "speed-up" in out


@needs_reference
def test_losses_only_one() -> None:
    out = run_script(BENCH / "losses.py", "--quick", "--no-compile", "--only", "energy",
                     "--task", "classification", "--no-write")  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| energy")]
    assert len(rows) == 1


@needs_reference
def test_every_pytorch_ood_loss_has_a_benchmark_spec() -> None:
    """A loss class added to the comparison must get a spec (or be measured nowhere)."""
    from torch import nn

    from ood_core.testing.reference import pytorch_ood_losses

    losses = load("losses")
    theirs = pytorch_ood_losses()
    classes = {
        name
        for name in dir(theirs)
        if isinstance(getattr(theirs, name), type) and issubclass(getattr(theirs, name), nn.Module)
    }
    assert classes == {spec.cls for spec in losses.SPECS}


@needs_reference
def test_compile_table_smoke() -> None:
    out = run_script(BENCH / "compile_table.py", "--quick", "--only", "energy", "--no-write")
    assert "| energy" in out and "Compiles with" in out


@needs_reference
def test_quality_smoke() -> None:
    out = run_script(
        BENCH / "quality.py", "--quick", "--synthetic", "--only", "cross-entropy,mchad",
        "--no-write",
    )  # fmt: skip
    assert "| cross-entropy" in out and "AUROC MNIST" in out


def test_quality_reads_idx(tmp_path: Path) -> None:
    quality = load("quality")
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(quality.read_idx(tmp_path / "x-idx3-ubyte"), images)


def test_quality_crops_are_28x28() -> None:
    pytest.importorskip("skimage")
    quality = load("quality")
    out = quality.crops(("brick", "camera"), 5, np.random.default_rng(0))
    assert out.shape == (5, 28, 28) and out.dtype == np.uint8 and out.std() > 0


def test_fetch_data_script_parses() -> None:
    subprocess.run(["bash", "-n", str(BENCH / "fetch_data.sh")], check=True)


@needs_reference
def test_posthoc_smoke() -> None:
    out = run_script(
        BENCH / "posthoc.py", "--quick", "--synthetic", "--tiny", "--only", "mahalanobis,gen",
        "--no-write",
    )  # fmt: skip
    assert "| mahalanobis" in out and "| gen" in out and "ONNX vs torch eager" in out
    row = next(line for line in out.splitlines() if line.startswith("| mahalanobis"))
    assert "error" not in row and row.split("|")[6].strip().endswith("x")  # fit speed ratio


@needs_reference
def test_posthoc_issue14_smoke() -> None:
    """Issue 14's part: a shaping scorer exported with the model, a gradient and a stochastic one."""
    out = run_script(
        BENCH / "posthoc.py", "--quick", "--synthetic", "--tiny", "--part", "14",
        "--only", "react,odin,mc-dropout", "--no-write",
    )  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| scorer")}  # fmt: skip
    assert set(rows) == {"react", "odin", "mc-dropout"}
    assert all("error" not in "|".join(r) for r in rows.values()), out
    logits_diff, score_diff = rows["react"][10].split("(")[0].split("/")
    assert float(logits_diff) < 1e-4 and float(score_diff) < 1e-4  # ONNX equals eager
    assert rows["odin"][3].strip() == "20" and rows["odin"][10].strip() == "-"  # subsampled
