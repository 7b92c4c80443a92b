"""Model inputs from files: ``.npy``/``.npz`` arrays or folders of images (Pillow, ``[images]``).

A float graph gets images scaled to [0, 1] in NCHW at its input size. A raw-image graph (its
metadata ``oodx.preprocess``) gets the decoded uint8 pixels in its layout: when the graph
resizes in-graph, images are only decoded (and cropped or padded to the graph's aspect ratio
for ``center-crop`` / ``pad``), and images of different sizes come back as a list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ood_runtime.errors import IMAGES_INSTALL, InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
RESIZE_MODES = ("stretch", "center-crop", "pad")


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise InputError(
            "reading a folder of images needs Pillow, which is not installed; "
            f"pip install pillow (or {IMAGES_INSTALL}), or pass the inputs as a .npy array"
        ) from None
    return Image


def _image_geometry(shape: Sequence[Any], preprocess: Mapping[str, Any] | None) -> tuple:
    """``(channels, (height, width) or None, nhwc, raw)`` the graph wants from an image."""
    if preprocess:
        nhwc = str(preprocess.get("layout", "NHWC")).upper() == "NHWC"
        size = (preprocess.get("resize") or {}).get("size") or preprocess.get("input_size")
        fixed = preprocess.get("input_size")
        return int(preprocess["channels"]), tuple(size), nhwc, True, fixed is None
    if len(shape) != 4 or not all(isinstance(s, int) for s in shape[1:]):
        raise InputError(
            f"the model's input shape {list(shape)} is not an image batch (N, C, H, W); "
            "pass the inputs as a .npy array"
        )
    return shape[1], (shape[2], shape[3]), False, False, False


def fit_aspect(img: Any, size: tuple[int, int], mode: str, image_module: Any) -> Any:
    """``img`` (a PIL image) centre-cropped or zero-padded to the aspect ratio of ``size``
    ``(height, width)``; unchanged for ``stretch``. No resampling happens here."""
    if mode not in RESIZE_MODES:
        raise InputError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    width, height = img.size
    th, tw = size
    if mode == "stretch" or width * th == height * tw:
        return img
    if mode == "center-crop":
        cw, ch = (
            (width, round(width * th / tw))
            if width * th < height * tw
            else (round(height * tw / th), height)
        )
        left, top = (width - cw) // 2, (height - ch) // 2
        return img.crop((left, top, left + cw, top + ch))
    pw, ph = (
        (width, round(width * th / tw))
        if width * th > height * tw
        else (round(height * tw / th), height)
    )
    canvas = image_module.new(img.mode, (pw, ph))  # black
    canvas.paste(img, ((pw - width) // 2, (ph - height) // 2))
    return canvas


def load_images(
    folder: str | os.PathLike[str],
    shape: Sequence[Any],
    *,
    preprocess: Mapping[str, Any] | None = None,
    resize_mode: str = "stretch",
) -> tuple[Any, list[str]]:
    """The images in ``folder`` (sorted by name) as the model's input, and their file names.

    See the module doc; ``resize_mode`` is the aspect-ratio policy (``stretch``,
    ``center-crop`` or ``pad``), applied before any resampling.
    """
    image_module = _pillow()
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"{folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); pass a folder of "
            "images or a .npy array of inputs"
        )
    channels, size, nhwc, raw, graph_resizes = _image_geometry(shape, preprocess)
    if channels not in (1, 3):
        raise InputError(f"the model takes {channels} channels; images give 1 or 3")
    arrays = []
    for path in files:
        try:
            with image_module.open(path) as img:
                img = fit_aspect(
                    img.convert("L" if channels == 1 else "RGB"), size, resize_mode, image_module
                )
                if not graph_resizes and img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), image_module.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], channels)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds of errors
            raise InputError(f"cannot read image {path}: {exc}") from None
        if not raw:
            arr = arr.astype(np.float32) / np.float32(255.0)
        arrays.append(arr if nhwc else arr.transpose(2, 0, 1))
    names = [p.name for p in files]
    if len({a.shape for a in arrays}) > 1:  # only when the graph resizes: one batch per size
        return arrays, names
    return np.stack(arrays), names


def read_array(path: str | os.PathLike[str]) -> np.ndarray:
    """The array in a ``.npy`` file or the first array of a ``.npz`` (never unpickling)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if hasattr(data, "files"):  # .npz: members are read (and checked) on access
                if not data.files:
                    raise InputError(f"{path} holds no arrays")
                data = data[data.files[0]]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds on malformed files
        raise InputError(f"cannot read {path} as a numpy array: {exc}") from None
    if not isinstance(data, np.ndarray):  # a .npz member that is not .npy: numpy gives bytes
        raise InputError(f"cannot read {path} as a numpy array: its first member is not .npy")
    return data


def load_inputs(
    path: str | os.PathLike[str],
    shape: Sequence[Any],
    *,
    preprocess: Mapping[str, Any] | None = None,
    resize_mode: str = "stretch",
) -> tuple[Any, list[str]]:
    """Inputs for a model: a ``.npy``/``.npz`` array or a folder of images (:func:`load_images`).

    ``shape`` is the ONNX input shape (``None`` or a name for dynamic dimensions), ``preprocess``
    the model's ``oodx.preprocess`` (``OnnxModel.preprocess``). Returns the inputs (numeric, at
    least one) and one name per input; anything unreadable is an :class:`InputError`. Object
    arrays are refused (``allow_pickle=False``).
    """
    path = Path(path)
    if path.is_dir():
        return load_images(path, shape, preprocess=preprocess, resize_mode=resize_mode)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InputError(
            f"cannot read inputs from {path}: give a .npy array (N, ...) or a folder of images"
        )
    data = read_array(path)
    if data.dtype.kind not in "biuf":
        raise InputError(f"inputs in {path} must be numbers (bool, int or float), got {data.dtype}")
    expected = [s if isinstance(s, int) else None for s in shape]
    if data.ndim != len(expected) or any(
        e is not None and e != d for e, d in zip(expected[1:], data.shape[1:])
    ):
        shown = ["N" if e is None else e for e in expected]
        raise InputError(f"inputs in {path} have shape {data.shape}; the model takes {shown}")
    if data.shape[0] == 0:
        raise InputError(f"{path} holds no inputs (an array of shape {data.shape})")
    return data, [str(i) for i in range(data.shape[0])]


def nonfinite_rows(data: Any) -> np.ndarray:
    """Boolean mask of the inputs (first axis, or list items) holding a NaN or an infinity."""
    if isinstance(data, list):
        return np.array([bool(nonfinite_rows(d[None]).any()) for d in data], dtype=bool)
    if data.dtype.kind != "f":
        return np.zeros(data.shape[0], dtype=bool)
    return ~np.isfinite(data.reshape(data.shape[0], -1)).all(axis=1)


def describe_rows(mask: np.ndarray, limit: int = 5) -> str:
    """``"3 of 10 inputs (rows 1, 4, 7)"`` for a boolean row mask."""
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r)) for r in rows[:limit]) + (", ..." if rows.size > limit else "")
    return f"{rows.size} of {mask.size} inputs (row{'s' if rows.size > 1 else ''} {shown})"


__all__ = [
    "IMAGE_SUFFIXES",
    "RESIZE_MODES",
    "describe_rows",
    "fit_aspect",
    "load_images",
    "load_inputs",
    "nonfinite_rows",
    "read_array",
]
