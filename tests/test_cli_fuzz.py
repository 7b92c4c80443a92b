"""Every command fed malformed input: exit 1 or 2 with an ``Error:`` line, never a traceback.

Inputs are built at test time: empty and 0-byte files, random bytes, object (pickled) arrays,
wrong dtypes and shapes, NaN/inf arrays, missing files, folders where files belong, huge names.
Commands run in-process through click's test runner; the closed-pipe case needs a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from oodx.main import cli

pytest.importorskip("onnxruntime", reason="needs onnxruntime (ood-exporter-onnx[cpu])")

SHAPE = (1, 8, 8)
NEEDLES_OF_A_BUG = ("Traceback", "unexpected", "a bug")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """A tiny calibrated ONNX model, its checkpoint and valid inputs."""
    import torch

    import ood_core
    from ood_exporter_onnx import export_onnx

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("fuzz-good")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    ckpt = ood_core.save(
        root / "tiny.pt2",
        model,
        ood_core.create_loss("cross-entropy"),
        example_input=torch.rand(2, *SHAPE),
    )
    inputs = root / "inputs.npy"
    np.save(inputs, np.random.default_rng(0).random((20, *SHAPE), dtype=np.float32))
    export_onnx(ckpt, "msp", root / "tiny.onnx", calibrate=inputs)
    return {"onnx": root / "tiny.onnx", "ckpt": ckpt, "inputs": inputs}


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=True)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """Malformed files by name: none of them is valid input for any command."""
    root = tmp_path_factory.mktemp("fuzz-bad")
    rng = np.random.default_rng(1)
    zipped = root / "junk.zip.npz"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("x.npy", b"not an array")
    folder = root / "folder.npy"
    folder.mkdir()
    nan = rng.random((4, *SHAPE), dtype=np.float32)
    nan[1, 0, 2, 2] = np.nan
    inf = rng.random((4, *SHAPE), dtype=np.float32)
    inf[3, 0, 0, 0] = -np.inf
    empty_npz = root / "empty.npz"
    np.savez(empty_npz)
    pickled_npz = root / "pickled.npz"
    np.savez(pickled_npz, a=np.array([{"x": 1}, None], dtype=object))
    return {
        "zero-byte": _write(root / "zero.npy", b""),
        "zero-byte-onnx": _write(root / "zero.onnx", b""),
        "random-bytes": _write(root / "random.npy", rng.bytes(512)),
        "random-onnx": _write(root / "random.onnx", rng.bytes(512)),
        "random-zip": _write(root / "random.pt2", b"PK\x03\x04" + rng.bytes(300)),
        "pickle-magic": _write(root / "pickle.pt", b"\x80\x04" + rng.bytes(100)),
        "text": _write(root / "notes.txt", b"hello"),
        "empty-array": _npy(root / "empty.npy", np.zeros((0, *SHAPE), np.float32)),
        "scalar": _npy(root / "scalar.npy", np.float32(1.0)),
        "wrong-shape": _npy(root / "shape.npy", np.zeros((3, 2, 8, 8), np.float32)),
        "flat": _npy(root / "flat.npy", np.zeros(64, np.float32)),
        "strings": _npy(root / "strings.npy", np.array([["ab"] * 8] * 8)[None, None]),
        "complex": _npy(root / "complex.npy", np.zeros((2, *SHAPE), np.complex64)),
        "object": _npy(root / "object.npy", np.array([{"a": 1}, None], dtype=object)),
        "nan": _npy(root / "nan.npy", nan),
        "inf": _npy(root / "inf.npy", inf),
        "junk-zip": zipped,
        "empty-npz": empty_npz,
        "pickled-npz": pickled_npz,
        "folder": folder,
        "missing": root / "missing.npy",
        "huge-name": root / ("x" * 300 + ".npy"),
    }


def run(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_error(result: object, *args: object) -> None:
    """Exit status 1 (data) or 2 (usage), an ``Error:`` line, no sign of a bug."""
    out = result.output
    assert result.exit_code in (1, 2), (args, result.exit_code, out, result.exception)
    assert "Error:" in out, (args, out)
    for needle in NEEDLES_OF_A_BUG:
        assert needle not in out, (args, out)
    assert not isinstance(result.exception, (KeyboardInterrupt,)) and (
        result.exception is None or isinstance(result.exception, SystemExit)
    ), (args, repr(result.exception))


BAD_INPUTS = [
    "zero-byte",
    "random-bytes",
    "text",
    "empty-array",
    "scalar",
    "wrong-shape",
    "flat",
    "strings",
    "complex",
    "object",
    "junk-zip",
    "empty-npz",
    "pickled-npz",
    "folder",
    "missing",
    "huge-name",
]
BAD_MODELS = ["zero-byte-onnx", "random-onnx", "random-zip", "text", "folder", "missing"]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_score_bad_inputs(good, bad, name):
    args = ("score", good["onnx"], bad[name])
    assert_clean_error(run(*args), *args)


@pytest.mark.parametrize("name", BAD_MODELS)
def test_score_and_eval_bad_models(good, bad, name):
    for args in (
        ("score", bad[name], good["inputs"]),
        ("eval", bad[name], "--id", good["inputs"], "--ood", good["inputs"]),
    ):
        assert_clean_error(run(*args), *args)


@pytest.mark.parametrize("name", [*BAD_INPUTS, "nan", "inf"])
@pytest.mark.parametrize("role", ["--id", "--ood"])
def test_eval_bad_inputs(good, bad, name, role):
    sets = {"--id": good["inputs"], "--ood": good["inputs"], role: bad[name]}
    args = ("eval", good["onnx"], "--id", sets["--id"], "--ood", sets["--ood"])
    assert_clean_error(run(*args), *args)


@pytest.mark.parametrize("labels", ["negative", "float", "short", "object", "zero-byte"])
def test_eval_bad_labels(good, bad, tmp_path, labels):
    values = {
        "negative": np.r_[np.zeros(19, np.int64), -1],
        "float": np.zeros(20, np.float32),
        "short": np.zeros(3, np.int64),
        "object": np.array([1, None] * 10, dtype=object),
    }
    path = bad["zero-byte"] if labels == "zero-byte" else _npy(tmp_path / "l.npy", values[labels])
    args = ("eval", good["onnx"], "--id", good["inputs"], "--ood", good["inputs"])
    result = run(*args, "--id-labels", path)
    assert_clean_error(result, labels)
    assert "--id-labels" in result.output


@pytest.mark.parametrize("name", [*BAD_MODELS, "pickle-magic", "zero-byte", "huge-name"])
def test_inspect_bad_files(bad, name):
    assert_clean_error(run("inspect", bad[name]), name)


@pytest.mark.parametrize("name", ["zero-byte", "random-zip", "text", "folder", "missing"])
def test_export_bad_checkpoints(bad, tmp_path, name):
    args = ("export", bad[name], "--scorer", "msp", "-o", tmp_path / "out.onnx")
    assert_clean_error(run(*args), *args)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ("--scorer", "no-such-scorer"),
        ("--scorer", "msp", "--opset", "x"),
        ("--scorer", "msp", "--batch-sizes", "a,b"),
        ("--scorer", "msp", "--input-shape", "0,-1"),
        ("--scorer", "msp", "--scorer-arg", "novalue"),
        ("--scorer", "msp", "--calibrate", "MISSING"),
    ],
)
def test_export_bad_options(good, tmp_path, extra):
    extra = tuple(str(tmp_path / "missing.npy") if e == "MISSING" else e for e in extra)
    args = ("export", good["ckpt"], *extra, "-o", tmp_path / "out.onnx")
    assert_clean_error(run(*args), *args)


@pytest.mark.parametrize("name", ["", "x" * 300, "../escape", "Bad Name!", "-", "a/b"])
def test_new_plugin_bad_names(tmp_path, name):
    args = ("new-plugin", name, "--dir", tmp_path / "p")
    assert_clean_error(run(*args), *args)


def test_new_plugin_dir_is_a_file(tmp_path):
    target = _write(tmp_path / "file", b"x")
    args = ("new-plugin", "fine-name", "--dir", target)
    assert_clean_error(run(*args), *args)


@pytest.mark.parametrize(
    "args",
    [("plugins", "--bogus"), ("plugins", "nope"), ("losses", "--task", "x" * 300), ("nope",)],
)
def test_listing_usage_errors(args):
    assert_clean_error(run(*args), *args)


def test_score_flags_nonfinite_inputs_and_scores(good, bad):
    result = run("score", good["onnx"], bad["nan"])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.stdout.splitlines()]
    header, rows = rows[0], rows[1:]
    flagged = [int(r[header.index("is_ood")]) for r in rows]
    assert flagged[1] == 1  # the row with the NaN, whatever its score
    assert "1 of 4 inputs (row 1)" in result.stderr


def test_is_ood_fails_closed(good):
    from ood_exporter_onnx.runtime import OnnxModel

    model = OnnxModel(good["onnx"])
    below = model.threshold - 1.0
    got = model.is_ood(np.array([np.nan, np.inf, -np.inf, below, model.threshold + 1.0]))
    assert got.tolist() == [True, True, True, False, True]
    assert bool(model.is_ood(np.float32("nan")))


def test_closed_pipe_is_quiet(good, tmp_path):
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(2).random((20_000, *SHAPE), dtype=np.float32))
    code = "import sys; from oodx.main import main; main(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "score", str(good["onnx"]), str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": ""},
    )
    assert proc.stdout.readline().startswith(b"input,score")
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Error" not in stderr and "Exception" not in stderr and "Traceback" not in stderr
