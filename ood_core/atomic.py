"""Atomic file writes: a temporary file beside the target, moved into place once complete.

Used by ``ood_core.save`` (checkpoints) and the ONNX exporter. Unlike ``tempfile.mkstemp``
(always mode 0600), the file gets the permissions ``open(target, "w")`` would give it: those of
the file it replaces, or ``0o666`` minus the umask for a new one. No torch import.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "replace_atomically", "temp_file_beside"]

_ATTEMPTS = 100


def temp_file_beside(target: str | os.PathLike[str]) -> Path:
    """Create a new empty file ``.<name>.<random>.tmp`` in the folder of ``target``.

    Created with ``O_EXCL`` and mode ``0o666`` (the kernel applies the umask, as for ``open``).
    """
    target = Path(target)
    for _ in range(_ATTEMPTS):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            )
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {target}")  # pragma: no cover


def replace_atomically(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Flush ``tmp`` to disk and move it onto ``target`` in one step.

    An existing ``target`` keeps its permission bits (``tmp`` takes them over before the move).
    """
    tmp, target = Path(tmp), Path(target)
    with contextlib.suppress(FileNotFoundError):
        old = target.stat()
        if stat.S_ISREG(old.st_mode):
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    with contextlib.suppress(OSError):  # the rename itself, durably (not possible everywhere)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block ends without an error it is moved
    onto ``target`` (:func:`replace_atomically`), otherwise removed: no half-written file."""
    tmp = temp_file_beside(target)
    try:
        yield tmp
        replace_atomically(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
