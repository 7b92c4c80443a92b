"""ood_core.atomic: files appear whole or not at all, with the permissions open() would give."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from ood_core.atomic import atomic_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_honours_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"data")
    finally:
        os.umask(old)
    assert mode(tmp_path / "out.bin") == 0o666 & ~umask


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_checkpoint_and_export_use_it():
    """Both writers go through the shared helper (no private mkstemp copy left)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    checkpoint = (root / "ood_core/checkpoint.py").read_text()
    assert "mkstemp(" not in checkpoint and "ood_core.atomic" in checkpoint
    exporter = {p.name: p.read_text() for p in (root / "exporters/onnx").rglob("*.py")}
    assert not [name for name, text in exporter.items() if "mkstemp(" in text]
    assert any("ood_core.atomic" in text for text in exporter.values())
