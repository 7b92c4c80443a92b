"""Loading an untrusted checkpoint runs no code: the attack corpus, the archive checks, the manifest schema."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import ood_core
from ood_core.archive import MANIFEST, check_expression, parse_json
from ood_core.errors import CheckpointError

_spec = importlib.util.spec_from_file_location(
    "checkpoint_attacks", Path(__file__).with_name("checkpoint_attacks.py")
)
attacks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attacks)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "model.pt2"
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    return ood_core.save(path, model, example_input=torch.randn(2, 4), classes=["a", "b", "c"])


@pytest.fixture(scope="module")
def corpus(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    work = tmp_path_factory.mktemp("corpus")
    return attacks.build_corpus(base, work / "files", work / "markers"), work / "markers"


_LOAD_ALL = """
import json, sys
import ood_core
from ood_core.errors import CheckpointError
out = {}
for path in sys.argv[1:]:
    try:
        ood_core.load(path)
        out[path] = "loaded"
    except CheckpointError as exc:
        out[path] = "CheckpointError: " + str(exc)
    except BaseException as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_every_attack_refused_in_a_subprocess(corpus: tuple[dict[str, Path], Path]) -> None:
    files, markers = corpus
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL, *map(str, files.values())],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(markers.iterdir()) == []  # no payload ran
    for name, path in files.items():
        message = results[str(path)]
        assert message.startswith("CheckpointError: "), (name, message)
        assert "\n" not in message and str(path) in message, (name, message)


def _rewrite(base: Path, dst: Path, edit) -> Path:
    return attacks.write_archive(dst, edit(attacks.read_entries(base)))


def _refused(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        ood_core.load(path)
    assert "\n" not in str(info.value)


def _patch_central(base: Path, dst: Path, suffix: str, offset: int, value: bytes) -> Path:
    """Copy ``base`` with bytes of one member's central-directory record overwritten."""
    data = bytearray(base.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n = int.from_bytes(data[pos + 28 : pos + 30], "little")
        if data[pos + 46 : pos + 46 + n].decode().endswith(suffix):
            data[pos + offset : pos + offset + len(value)] = value
        pos = data.find(b"PK\x01\x02", pos + 46)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("name", "edit", "match"),
    [
        ("backslash", lambda e: [*e, ("archive\\evil", b"x")], "backslash"),
        ("absolute", lambda e: [*e, ("/archive/evil", b"x")], "absolute"),
        ("outside-root", lambda e: [*e, ("other/models/model.json", b"{}")], "outside the archive"),
        ("unknown", lambda e: [*e, ("archive/oodx/notes.txt", b"x")], "allow-list"),
        ("undeclared-weight", lambda e: [*e, ("archive/data/weights/weight_99", b"x" * 8)], "does not declare"),
        ("oversized-weight", lambda e: attacks._replace(e, "/data/weights/weight_0", b"\0" * 1_000_000), "declare"),
        ("archive-format", lambda e: attacks._replace(e, "/archive_format", b"zip"), "must read"),
        ("missing-sample", lambda e: attacks._drop(e, "sample_inputs/model.pt"), "missing"),
        ("empty", lambda e: [], "empty"),
        ("node-target", lambda e: attacks._edit_json(
            e, "models/model.json",
            lambda p: p["graph_module"]["graph"]["nodes"][0].__setitem__("target", "torch.os.system"),
        ), "not an aten/prims operator"),
        ("nan-in-config", lambda e: attacks._replace(e, "model_constants_config.json", b'{"config": NaN}'), "NaN"),
    ],
)  # fmt: skip
def test_archive_structure_refused(base: Path, tmp_path: Path, name: str, edit, match: str) -> None:
    _refused(_rewrite(base, tmp_path / f"{name}.pt2", edit), match)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [(8, b"\x01\x08", "encrypted"), (10, b"\x0c\x00", "compression method")],
)
def test_member_flags_refused(
    base: Path, tmp_path: Path, offset: int, value: bytes, match: str
) -> None:
    _refused(_patch_central(base, tmp_path / "flags.pt2", "weight_0", offset, value), match)


def test_zip_bomb_refused_before_inflation(base: Path, tmp_path: Path) -> None:
    entries = attacks.read_entries(base)
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        with zf.open("archive/oodx/tensors/0.bin", "w", force_zip64=True) as f:
            for _ in range(64):
                f.write(b"\0" * (1 << 20))  # 64 MiB of zeros deflate to ~64 KiB
    _refused(bomb, "ratio")


def test_trust_pickle_does_not_relax_the_archive_checks(
    corpus: tuple[dict[str, Path], Path],
) -> None:
    files, markers = corpus
    with pytest.raises(CheckpointError, match="legacy pickle"):
        ood_core.load(files["legacy-weights"], trust_pickle=True)
    assert not (markers / "legacy-weights").exists()


def test_valid_and_plain_pt2_still_load(base: Path, tmp_path: Path) -> None:
    ckpt = ood_core.load(base)
    assert ckpt.source == "oodx" and ckpt.classes == ["a", "b", "c"]
    assert ckpt.model(torch.randn(5, 4)).shape == (5, 3) and ckpt.example_input.shape == (2, 4)
    model = nn.Linear(3, 2).eval()
    program = torch.export.export(
        model, (torch.randn(2, 3),), dynamic_shapes=({0: torch.export.Dim("b")},)
    )
    torch.export.save(program, tmp_path / "plain.pt2")
    plain = ood_core.load(tmp_path / "plain.pt2")
    torch.testing.assert_close(plain.model(torch.ones(4, 3)), model(torch.ones(4, 3)))


@pytest.mark.parametrize(
    "text", ["Symbol('s31', positive=True, integer=True)", "FloorDiv(s0, 2) + 3*s1", "Max(1, s0)"]
)
def test_symbolic_expressions_allowed(text: str) -> None:
    assert check_expression(text) is None


@pytest.mark.parametrize(
    "text",
    ["__import__('os')", "Symbol.__class__", "s0.__dict__", "lambda: 1", "open('x')", "[s0]"],
)
def test_symbolic_expressions_refused(text: str) -> None:
    assert check_expression(text) is not None


# --------------------------------------------------------------------------------------------
# manifest schema


def _with_manifest(base: Path, dst: Path, edit) -> Path:
    def rewrite(entries):
        out = []
        for n, d in entries:
            if n.endswith(MANIFEST):
                d = edit(json.loads(d))
                d = d if isinstance(d, bytes) else json.dumps(d).encode()
            out.append((n, d))
        return out

    return _rewrite(base, dst, rewrite)


def _put(path: str, value):
    def edit(m: dict) -> dict:
        *parents, last = path.split(".")
        target = m
        for p in parents:
            target = target[p]
        target[last] = value
        return m

    return edit


_LOSS = {"name": "cross-entropy", "class": "x", "kwargs": {}, "kwargs_from": "x", "plugin": None,
         "distribution": None, "version": None, "scorer": None, "state": {}}  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_put("format_version", "1"), "format_version"),
        (_put("format_version", True), "format_version"),
        (_put("format_version", 1.0), "format_version"),
        (_put("classes", "abc"), "classes"),
        (_put("classes", [1, 2]), "classes"),
        (_put("model", []), "'model'"),
        (_put("model.input_shape", [None, -3]), "input_shape"),
        (_put("model.input_shape", [None, 10**20]), "input_shape"),
        (_put("model.input_dtype", "object"), "input_dtype"),
        (_put("loss", "cross-entropy"), "'loss'"),
        (_put("loss", {**_LOSS, "kwargs": [1]}), "kwargs"),
        (_put("loss", {**_LOSS, "state": {"w": "oodx/tensors/0.bin"}}), "state entry"),
        (
            _put(
                "loss",
                {**_LOSS, "state": {"w": {"file": "../x", "dtype": "float32", "shape": [1]}}},
            ),
            "file",
        ),
        (
            _put(
                "loss",
                {
                    **_LOSS,
                    "state": {"w": {"file": "oodx/tensors/0.bin", "dtype": "q", "shape": [1]}},
                },
            ),
            "dtype",
        ),
        (
            _put(
                "loss",
                {
                    **_LOSS,
                    "state": {
                        "w": {"file": "oodx/tensors/0.bin", "dtype": "float32", "shape": [-1]}
                    },
                },
            ),
            "shape",
        ),
        (
            _put(
                "loss",
                {
                    **_LOSS,
                    "state": {
                        "w": {"file": "oodx/tensors/0.bin", "dtype": "float32", "shape": [4]}
                    },
                },
            ),
            "missing",
        ),
        (_put("loss", {**_LOSS, "name": "no-such-loss"}), "not registered"),
        (_put("plugins", [1]), "plugins"),
        (_put("extra", 3), "extra"),
        (
            lambda m: (
                json.dumps(m).replace('"format_version": 1', '"format_version": NaN').encode()
            ),
            "NaN",
        ),
        (lambda m: b"[" * 100_000 + b"]" * 100_000, "deeper"),
        (lambda m: b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_manifest_field(base: Path, tmp_path: Path, edit, match: str) -> None:
    _refused(_with_manifest(base, tmp_path / "bad.pt2", edit), match)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
_fields = st.sampled_from(["format", "format_version", "model", "loss", "classes", "plugins", "extra",
                           "model.input_shape", "model.input_dtype", "created"])  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_fields, _json, max_size=4))
def test_manifest_reader_never_crashes(
    tmp_path_factory: pytest.TempPathFactory, changes: dict
) -> None:
    from ood_core.archive import check_manifest

    manifest = {
        "format": "oodx-checkpoint",
        "format_version": 1,
        "model": {"input_shape": [None, 4]},
    }
    for key, value in changes.items():
        target = manifest
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {}) if isinstance(target.get(p, {}), dict) else {}
        target[last] = value
    try:
        check_manifest(json.loads(json.dumps(manifest)), lambda what: CheckpointError(what))
    except CheckpointError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_json_reader_never_crashes(data: bytes) -> None:
    try:
        parse_json(data, 8, lambda what: CheckpointError(what))
    except CheckpointError:
        pass
