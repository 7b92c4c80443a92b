"""Reading model inputs from the command line: ``.npy``/``.npz`` arrays or folders of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oodx.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_images(folder: Path, shape: list[Any]) -> tuple[Any, list[str]]:
    """A folder of images as a float array in [0, 1] of the model's input shape, and the file names."""
    import numpy as np

    try:
        from PIL import Image
    except ImportError:
        raise UserError(
            "reading a folder of images needs Pillow, which is not installed",
            hint="pip install pillow   (or pass the inputs as a .npy array)",
        ) from None
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(
            f"{folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
            hint="pass a folder of images or a .npy array of inputs",
        )
    if len(shape) != 4 or not all(isinstance(s, int) for s in shape[1:]):
        raise UserError(
            f"the model's input shape {shape} is not an image batch (N, C, H, W); "
            "pass the inputs as a .npy array"
        )
    channels, height, width = shape[1:]
    if channels not in (1, 3):
        raise UserError(
            f"the model takes {channels} channels; images give 1 or 3. Use a .npy array."
        )
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert(mode).resize((width, height))
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds of errors
            raise UserError(f"cannot read image {path}: {exc}") from None
        arrays.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
    return np.stack(arrays), [p.name for p in files]


def _read_array(path: Path) -> Any:
    """The array in a ``.npy`` file or the first array of a ``.npz`` (never unpickling)."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if hasattr(data, "files"):  # .npz: members are read (and checked) on access
                if not data.files:
                    raise UserError(f"{path} holds no arrays")
                data = data[data.files[0]]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds on malformed files
        raise UserError(f"cannot read {path} as a numpy array: {exc}") from None
    if not isinstance(data, np.ndarray):  # a .npz member that is not .npy: numpy gives bytes
        raise UserError(f"cannot read {path} as a numpy array: its first member is not .npy")
    return data


def load_inputs(path: Path, shape: list[Any]) -> tuple[Any, list[str]]:
    """Inputs for ``oodx score`` and ``oodx eval``: a ``.npy``/``.npz`` array or a folder of images.

    ``shape`` is the ONNX input shape (``None`` or a name for dynamic dimensions). Returns the
    array (numeric, at least one input) and one name per input; anything unreadable is a
    :class:`UserError`. Object arrays are refused (``allow_pickle=False``).
    """
    if path.is_dir():
        return load_images(path, shape)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise UserError(
            f"cannot read inputs from {path}: give a .npy array (N, ...) or a folder of images"
        )
    data = _read_array(path)
    if data.dtype.kind not in "biuf":
        raise UserError(f"inputs in {path} must be numbers (bool, int or float), got {data.dtype}")
    expected = [s if isinstance(s, int) else None for s in shape]
    if data.ndim != len(expected) or any(
        e is not None and e != d for e, d in zip(expected[1:], data.shape[1:])
    ):
        shown = ["N" if e is None else e for e in expected]
        raise UserError(f"inputs in {path} have shape {data.shape}; the model takes {shown}")
    if data.shape[0] == 0:
        raise UserError(f"{path} holds no inputs (an array of shape {data.shape})")
    return data, [str(i) for i in range(data.shape[0])]


def nonfinite_rows(data: Any) -> Any:
    """Boolean mask of the inputs (first axis) holding a NaN or an infinity."""
    import numpy as np

    if data.dtype.kind != "f":
        return np.zeros(data.shape[0], dtype=bool)
    return ~np.isfinite(data.reshape(data.shape[0], -1)).all(axis=1)


def describe_rows(mask: Any, limit: int = 5) -> str:
    """``"3 of 10 inputs (rows 1, 4, 7)"`` for a boolean row mask."""
    import numpy as np

    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r)) for r in rows[:limit]) + (", ..." if rows.size > limit else "")
    return f"{rows.size} of {mask.size} inputs (row{'s' if rows.size > 1 else ''} {shown})"
