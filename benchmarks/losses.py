"""Loss speed: forward + backward of every loss oodx and pytorch-ood 0.4.0 both have.

For each pair (our loss, created with ``ood_core.create_loss``, and the pytorch-ood class of the
same name, built with the same keywords and, where it has state, the same state) the script
feeds identical inputs to both and times one ``forward`` + ``backward`` per call. Calls are
interleaved (ours, theirs, ours, theirs, ...) in one process and the median of ``--repeats``
calls is reported per side, with the ratio ``pytorch-ood / ours`` (> 1: we are faster).

Sizes: classification ``B=512, C=100, D=128``; segmentation (methods that support it on both
sides) ``B=8, C=19, 128x128``. With ``--compile`` (the default) our loss is also timed under
``torch.compile(fullgraph=True)`` (inductor unless ``--backend`` says otherwise); compile
warm-up is excluded from the timings and reported in its own column. On ``--device cuda``
the script synchronises around each call and counts host-device synchronisations per call with
``torch.cuda.set_sync_debug_mode("warn")``.

    python benchmarks/losses.py                  # CPU, full sizes, writes results/losses-cpu.md
    python benchmarks/losses.py --device cuda    # GPU, writes results/losses-cuda.md
    python benchmarks/losses.py --only mchad --no-compile --no-write
    python benchmarks/losses.py --quick --no-write   # smoke run (small sizes, few repeats)
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result  # noqa: E402

DEPS = ("ood-core", "torch", "pytorch-ood")


@dataclass(frozen=True)
class Size:
    """One input size: batch, classes, embedding dim and (segmentation) spatial size."""

    task: str
    batch: int
    classes: int
    dim: int
    spatial: tuple[int, int] = ()

    def __str__(self) -> str:
        if self.task == "segmentation":
            return f"seg B={self.batch} C={self.classes} {self.spatial[0]}x{self.spatial[1]}"
        return f"cls B={self.batch} C={self.classes} D={self.dim}"


FULL = {
    "classification": Size("classification", 512, 100, 128),
    "segmentation": Size("segmentation", 8, 19, 32, (128, 128)),
}
QUICK = {
    "classification": Size("classification", 16, 5, 8),
    "segmentation": Size("segmentation", 2, 3, 4, (8, 8)),
}


# ----------------------------------------------------------------------------- inputs
def _float(g: torch.Generator, shape: tuple[int, ...], scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=g) * scale


def _target(g: torch.Generator, size: Size, ood: float = 0.25) -> torch.Tensor:
    shape = (size.batch, *size.spatial)
    t = torch.randint(0, size.classes, shape, generator=g)
    mask = torch.rand(shape, generator=g) < ood
    flat = mask.reshape(-1)
    flat[0], flat[-1] = False, True  # both parts present (some losses need it)
    return torch.where(mask, torch.full_like(t, -1), t)


def _logits(g: torch.Generator, size: Size, extra: int = 0) -> torch.Tensor:
    return _float(g, (size.batch, size.classes + extra, *size.spatial), 3.0)


def _emb(g: torch.Generator, size: Size) -> torch.Tensor:
    return _float(g, (size.batch, size.dim, *size.spatial))


def _dist(g: torch.Generator, size: Size) -> torch.Tensor:
    return _float(g, (size.batch, size.classes)).abs() * 4.0


def logits_target(g: torch.Generator, size: Size) -> tuple:
    return _logits(g, size), _target(g, size)


def dist_target(g: torch.Generator, size: Size) -> tuple:
    return _dist(g, size), _target(g, size)


def emb_target(g: torch.Generator, size: Size) -> tuple:
    return _emb(g, size), _target(g, size)


def emb_id_target(g: torch.Generator, size: Size) -> tuple:
    return _emb(g, size), _target(g, size, ood=0.0)


def logits_features_target(g: torch.Generator, size: Size) -> tuple:
    return _logits(g, size), _emb(g, size), _target(g, size)


def logits_conf_target(g: torch.Generator, size: Size) -> tuple:
    return (
        _logits(g, size),
        torch.rand((size.batch, 1), generator=g) * 0.98 + 0.01,
        _target(g, size),
    )


def background_inputs(g: torch.Generator, size: Size) -> tuple:
    return _logits(g, size, extra=1), _target(g, size)


# ----------------------------------------------------------------------------- the pairs
@dataclass
class Pair:
    """Both sides of one spec, built and fed identically."""

    spec: Spec
    ours: nn.Module
    theirs: nn.Module
    state_shared: bool
    extra: tuple = field(default_factory=tuple)


@dataclass
class Spec:
    """How to build one loss on both sides and what to feed it.

    ``kwargs(size)`` are the constructor keywords shared by both sides; ``build(size)`` (when
    given) returns ``(ours_kwargs, theirs_kwargs)`` instead, for losses that take modules.
    ``extra(theirs)`` are extra forward arguments of both sides (scone's logistic regression).
    """

    name: str  # our registered name
    cls: str  # pytorch-ood 0.4.0 class name
    inputs: Callable[[torch.Generator, Size], tuple]
    kwargs: Callable[[Size], dict[str, Any]] = lambda s: {}
    build: Callable[[Size], tuple[dict, dict]] | None = None
    tasks: tuple[str, ...] = ("classification",)
    extra: Callable[[Size], tuple] | None = None
    note: str = ""
    train: bool = True  # module.train() (stateful losses update their state)
    prepare: Callable[[Pair, Size, str], None] | None = None  # bring both into steady state


def _vos_modules(size: Size) -> tuple[dict, dict]:
    lr, we = nn.Linear(1, 2), nn.Linear(size.classes, 1)
    ours = {"logistic_regression": lr, "weights_energy": we}
    return ours, copy.deepcopy(ours)


def _vos_synthesis(size: Size, sample_number: int = 16) -> tuple[dict, dict]:
    ours, _ = _vos_modules(size)
    ours.update(
        fc=nn.Linear(size.dim, size.classes),
        sample_number=sample_number,
        select=1,
        sample_from=1000,
    )
    return ours, copy.deepcopy(ours)


def _fill_vos_queues(pair: Pair, size: Size, device: str) -> None:
    """Fill both sides' class queues (same features), so that every timed call synthesises."""
    n = pair.ours.sample_number
    g = torch.Generator().manual_seed(1)
    y = torch.arange(size.classes).repeat_interleave(n).to(device)
    feats = torch.randn((len(y), size.dim), generator=g).to(device)
    logits = torch.randn((len(y), size.classes), generator=g).to(device)
    for loss in (pair.ours, pair.theirs):
        loss(logits, feats, y)
    full = sum(pair.theirs.number_dict.values()) == size.classes * n
    if not (full and bool(pair.ours.queues_full())):
        raise RuntimeError("VOS queues not full after filling")


def _scone_extra(size: Size) -> tuple:
    return (nn.Linear(1, 1),)


SPECS: list[Spec] = [
    Spec("cross-entropy", "CrossEntropyLoss", logits_target, tasks=("classification", "segmentation")),
    Spec("outlier-exposure", "OutlierExposureLoss", logits_target, tasks=("classification", "segmentation")),
    Spec("energy", "EnergyRegularizedLoss", logits_target, tasks=("classification", "segmentation")),
    Spec("entropic-open-set", "EntropicOpenSetLoss", logits_target, tasks=("classification", "segmentation")),
    Spec("objectosphere", "ObjectosphereLoss", logits_features_target, tasks=("classification", "segmentation")),
    Spec("logitnorm", "LogitNorm", logits_target, tasks=("classification", "segmentation")),
    Spec(
        "background-class", "BackgroundClassLoss", background_inputs,
        kwargs=lambda s: {"n_classes": s.classes}, tasks=("classification", "segmentation"),
    ),
    Spec("vos", "VOSRegLoss", logits_target, build=_vos_modules, tasks=("classification", "segmentation")),
    Spec(
        "vos-synthesis", "VirtualOutlierSynthesizingRegLoss", logits_features_target,
        build=_vos_synthesis, prepare=_fill_vos_queues,
        note="sample_number=16, sample_from=1000, select=1, queues full",
    ),
    Spec(
        "vos-synthesis", "VirtualOutlierSynthesizingRegLoss", logits_features_target,
        # queues long enough that no timed call fills them (~4 ID samples per class per call)
        build=functools.partial(_vos_synthesis, sample_number=1000),
        note="sample_number=1000, sample_from=1000, select=1, queues filling",
    ),
    Spec("mchad", "MCHADLoss", dist_target, kwargs=lambda s: {"n_classes": s.classes, "n_dim": s.dim, "radius": 1.0, "margin": 1.0}),
    Spec("center", "CenterLoss", dist_target, kwargs=lambda s: {"n_classes": s.classes, "n_dim": s.dim}),
    Spec("cac", "CACLoss", dist_target, kwargs=lambda s: {"n_classes": s.classes}),
    Spec("ii", "IILoss", emb_target, kwargs=lambda s: {"n_classes": s.classes, "n_embedding": s.dim}),
    Spec("confidence", "ConfidenceLoss", logits_conf_target),
    Spec("deep-svdd", "DeepSVDDLoss", emb_target, kwargs=lambda s: {"n_dim": s.dim}),
    Spec("deep-sad", "DeepSADLoss", emb_target, kwargs=lambda s: {"n_dim": s.dim}),
    Spec(
        "scone", "EnergyMarginLoss", logits_target, kwargs=lambda s: {"full_train_loss": 2.0},
        extra=_scone_extra,
    ),
]  # fmt: skip


def build_pair(spec: Spec, size: Size, device: str) -> Pair:
    """Our loss and pytorch-ood's, same keywords and (where both have state) the same state."""
    import ood_core
    from ood_core.testing.reference import pytorch_ood_losses

    if spec.build is not None:
        ours_kw, theirs_kw = spec.build(size)
    else:
        ours_kw = theirs_kw = spec.kwargs(size)
    torch.manual_seed(0)
    theirs = getattr(pytorch_ood_losses(), spec.cls)(**theirs_kw)
    ours = ood_core.create_loss(spec.name, **ours_kw)
    shared = False
    state = theirs.state_dict()
    if state:
        try:
            ours.load_state_dict(state)
            shared = True
        except Exception:  # noqa: BLE001 - report, do not fail: the state is just not shared
            shared = False
    ours.to(device).train(spec.train)
    theirs.to(device).train(spec.train)
    extra = tuple(m.to(device) for m in spec.extra(size)) if spec.extra else ()
    pair = Pair(spec, ours, theirs, shared, extra)
    if spec.prepare is not None:
        spec.prepare(pair, size, device)
    return pair


def make_inputs(spec: Spec, size: Size, device: str, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    out = []
    for x in spec.inputs(g, size):
        x = x.to(device)
        if x.is_floating_point():
            x.requires_grad_(True)
        out.append(x)
    return tuple(out)


def step(loss: Callable, inputs: tuple, extra: tuple = ()) -> torch.Tensor:
    """One forward + backward; input gradients are cleared first."""
    for x in inputs:
        x.grad = None
    value = loss(*inputs, *extra)
    if value.dim():
        value = value.mean()
    value.backward()
    return value


def available_pairs(only: str | None = None) -> tuple[list[Spec], list[str]]:
    """Specs whose loss exists on both sides, and notes on those skipped."""
    import ood_core
    from ood_core.testing.reference import pytorch_ood_losses

    ours = {info.name for info in ood_core.list_losses()}
    theirs = pytorch_ood_losses()
    keep, skipped = [], []
    for spec in SPECS:
        if only and only not in (spec.name, spec.cls):
            continue
        if spec.name not in ours:
            skipped.append(f"{spec.name} ({spec.cls}): not registered in oodx (plugin missing)")
        elif not hasattr(theirs, spec.cls):
            skipped.append(f"{spec.name}: pytorch-ood has no {spec.cls}")
        else:
            keep.append(spec)
    return keep, skipped


def supports(spec: Spec, task: str) -> bool:
    import ood_core

    if task not in spec.tasks:
        return False
    return task in ood_core.get_info("loss", spec.name).tasks


# ----------------------------------------------------------------------------- timing
class Timer:
    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def count_syncs(fn: Callable[[], Any]) -> int:
    """Host-device synchronisations during ``fn()`` (CUDA only), via sync debug mode warnings."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.3f}"


def fmt_ratio(theirs: float | None, ours: float | None) -> str:
    if theirs is None or ours is None:
        return "n/a"
    return f"{theirs / ours:.2f}x"


def first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text[:90]


def bench_one(spec: Spec, size: Size, args: argparse.Namespace, timer: Timer) -> dict[str, Any]:
    """Time one pair at one size; the row of the table as a dict."""
    row: dict[str, Any] = {"loss": spec.name, "pytorch-ood": spec.cls, "size": str(size)}
    pair = build_pair(spec, size, args.device)
    inputs = make_inputs(spec, size, args.device)
    theirs_in = make_inputs(spec, size, args.device)  # same values, own leaves
    ours_fn = lambda: step(pair.ours, inputs, pair.extra)  # noqa: E731
    theirs_fn = lambda: step(pair.theirs, theirs_in, pair.extra)  # noqa: E731
    from ood_core.validation import set_value_checks

    def unchecked() -> None:
        set_value_checks("never")
        try:
            ours_fn()
        finally:
            set_value_checks("auto")

    errors = []
    sides = {"ours": ours_fn, "theirs": theirs_fn, "unchecked": unchecked}
    for name, fn in list(sides.items()):
        try:
            for _ in range(args.warmup):
                fn()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{name}: {first_line(exc)}")
            sides.pop(name)
    if args.compile and "ours" in sides:
        compiled = torch.compile(pair.ours, backend=args.backend, fullgraph=True)
        comp_fn = lambda: step(compiled, inputs, pair.extra)  # noqa: E731
        try:
            row["compile warm-up s"] = f"{timer(comp_fn):.1f}"
            for _ in range(max(args.warmup - 1, 1)):
                comp_fn()
            sides["compiled"] = comp_fn
        except Exception as exc:  # noqa: BLE001
            errors.append(f"compiled: {first_line(exc)}")
            row["compile warm-up s"] = "fails"
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, fn in sides.items():  # interleaved: ours, theirs, compiled, ours, ...
            times[name].append(timer(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    row["ours ms"] = fmt_ms(med.get("ours"))
    row["pytorch-ood ms"] = fmt_ms(med.get("theirs"))
    row["speed-up"] = fmt_ratio(med.get("theirs"), med.get("ours"))
    row["ours, no value checks ms"] = fmt_ms(med.get("unchecked"))
    if args.compile:
        row["ours compiled ms"] = fmt_ms(med.get("compiled"))
        row["speed-up compiled"] = fmt_ratio(med.get("theirs"), med.get("compiled"))
    if timer.cuda:
        row["syncs ours"] = count_syncs(ours_fn) if "ours" in sides else "n/a"
        row["syncs pytorch-ood"] = count_syncs(theirs_fn) if "theirs" in sides else "n/a"
    row["notes"] = "; ".join(
        errors
        + ([spec.note] if spec.note else [])
        + ([] if pair.state_shared or not pair.theirs.state_dict() else ["state not shared"])
    )
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", default=None, help="one loss (our name or pytorch-ood class)")
    parser.add_argument("--task", choices=("classification", "segmentation"), default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 repeats (smoke run)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default on the CPU: 1, see the README; on CUDA: unchanged)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.threads is None and not args.device.startswith("cuda"):
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats is None:
        args.repeats = 3 if args.quick else (30 if args.device.startswith("cuda") else 25)
    if args.quick:
        args.warmup = 1
    sizes = QUICK if args.quick else FULL
    timer = Timer(args.device)
    specs, skipped = available_pairs(args.only)
    rows = []
    for task in ("classification", "segmentation"):
        if args.task and task != args.task:
            continue
        for spec in specs:
            if not supports(spec, task):
                continue
            row = bench_one(spec, sizes[task], args, timer)
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    headers = ["loss", "size", "ours ms", "pytorch-ood ms", "speed-up", "ours, no value checks ms"]
    if args.compile:
        headers += ["ours compiled ms", "speed-up compiled", "compile warm-up s"]
    if timer.cuda:
        headers += ["syncs ours", "syncs pytorch-ood"]
    headers.append("notes")
    body = table(headers, [[r.get(h, "") for h in headers] for r in rows])
    legend = (
        f"\n\nMedian of {args.repeats} interleaved calls per side (after {args.warmup} warm-up "
        "calls), each one forward + backward of the loss alone on the same inputs; speed-up = "
        "pytorch-ood time / our time (> 1: oodx faster). 'no value checks': ours with "
        "`ood_core.validation.set_value_checks('never')` (the NaN / target-range checks that run "
        "in eager mode on the CPU only; never on a GPU or under compile). "
        + (
            f"Compiled: `torch.compile(ours, backend={args.backend!r}, fullgraph=True)`; its "
            "warm-up (tracing + code generation, first call) is excluded from the timing and shown "
            "in its own column. "
            if args.compile
            else ""
        )
        + (
            "syncs: host-device synchronisations counted by `torch.cuda.set_sync_debug_mode` in "
            "one call. "
            if timer.cuda
            else ""
        )
        + f"Threads: {torch.get_num_threads()}. The machine may be shared: timings are noisy, "
        "ratios (interleaved) are more reliable than absolute times."
    )
    if skipped:
        legend += "\n\nNot measured:\n" + "\n".join(f"- {s}" for s in skipped)
    print()
    print(body + legend)
    if not args.no_write:
        device = "cuda" if timer.cuda else "cpu"
        argv_s = " ".join(argv if argv is not None else sys.argv[1:])
        path = write_result(
            f"losses-{device}",
            f"Loss speed, oodx vs pytorch-ood 0.4.0 ({device})",
            body + legend,
            deps=DEPS,
            command=f"python benchmarks/losses.py {argv_s}".strip(),
        )
        print(f"\nwritten to {path}")
    return rows


if __name__ == "__main__":
    main()
