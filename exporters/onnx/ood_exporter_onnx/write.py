"""Stage *write*: the graph goes to a temporary file beside the output and is moved into place
only when every check passed (``ood_core.atomic``); on any failure no output file exists."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import onnx

from ood_core.atomic import atomic_path
from ood_exporter_onnx.errors import ExportError

_EXTERNAL_DATA_LIMIT = 1_800_000_000  # bytes of initializers above which the 2 GB proto limit bites


def output_path(output: str | Path) -> Path:
    """``output`` as a path whose folder exists; a folder given as output is an error."""
    out = Path(output)
    if out.is_dir():
        raise ExportError(f"output {out} is a folder; give a file name such as model.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def save_proto(proto: onnx.ModelProto, path: Path) -> None:
    """Write ``proto`` to ``path`` (weights over ~1.8 GB to the side file ``<path>.data``)."""
    size = sum(t.ByteSize() for t in proto.graph.initializer)
    if size > _EXTERNAL_DATA_LIMIT:  # protobuf cannot serialise 2 GB: weights go to a side file
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
        )
    else:
        onnx.save_model(proto, str(path))


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """Yield a temporary file beside ``target``; moved onto it when the block succeeds.

    A graph whose weights went to a side file (over 2 GB) is refused: that file would not follow
    the rename. The temporary file and any side file are removed either way.
    """
    side: Path | None = None
    try:
        with atomic_path(target) as tmp:  # mode as open() gives it, not mkstemp's 0600
            side = Path(f"{tmp}.data")
            yield tmp
            if side.exists():
                raise ExportError(
                    f"model is larger than 2 GB ({side.stat().st_size / 1e9:.1f} GB of weights); "
                    "external-data export is not supported yet"
                )
    finally:
        if side is not None:
            with contextlib.suppress(FileNotFoundError):
                side.unlink()


__all__ = ["output_path", "save_proto", "staged"]
