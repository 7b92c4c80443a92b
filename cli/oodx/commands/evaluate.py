"""``oodx eval``: OOD metrics of an exported model on ID data against one or more OOD sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from oodx.errors import UserError

_EXISTING = click.Path(exists=True, path_type=Path)


def _set_name(path: Path, taken: set[str]) -> str:
    base = path.stem if path.is_file() else path.name
    name, k = base or "ood", 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _scores(runner: Any, path: Path, batch_size: int) -> dict[str, Any]:
    """The model's outputs on the inputs in ``path``; non-finite inputs or scores are refused
    (a NaN ranked anywhere would count some sample as in-distribution or not arbitrarily)."""
    import numpy as np

    from ood_runtime.inputs import describe_rows, load_inputs, nonfinite_rows

    try:
        data, _ = load_inputs(path, runner.input_shape, preprocess=runner.preprocess)
    except ValueError as exc:  # ood_runtime's InputError
        raise UserError(str(exc)) from None
    bad = nonfinite_rows(data)
    if bad.any():
        raise UserError(
            f"{describe_rows(bad)} in {path} hold NaN or inf; oodx eval needs finite inputs",
            hint="drop or repair those rows (oodx score flags them OOD)",
        )
    try:
        run = runner.run(data, batch_size=batch_size)
    except Exception as exc:  # noqa: BLE001 - onnxruntime errors on bad input
        raise UserError(f"onnxruntime failed on {path}: {exc}") from None
    scores = np.asarray(run["score"]).reshape(len(data), -1)
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise UserError(
            f"the model gives NaN or infinite scores for {describe_rows(bad)} in {path}; "
            "oodx eval refuses to rank them (a non-finite score is OOD when deployed, but "
            "counting it as the top score would credit the detector on OOD sets)"
        )
    return run


def _read_labels(path: Path, n: int) -> Any:
    """Integer class labels ``>= 0``, one per ID input, from a ``.npy`` file."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            labels = np.load(f, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds on malformed files
        raise UserError(f"cannot read --id-labels {path}: {exc}") from None
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.shape != (n,):
        got = (
            f"{labels.dtype} array of shape {labels.shape}"
            if isinstance(labels, np.ndarray)
            else "an .npz archive"
        )
        raise UserError(
            f"--id-labels must be integer class labels, one per ID input ({n}), got {got}"
        )
    if labels.size and labels.min() < 0:
        raise UserError(
            f"--id-labels must be class indices >= 0 (the ID inputs are in-distribution), got "
            f"{int(np.count_nonzero(labels < 0))} negative label(s), e.g. {int(labels.min())}"
        )
    return labels


@click.command(
    "eval",
    epilog="""\b
Examples:
  oodx eval model.onnx --id id_test.npy --ood textures.npy --ood photos/
  oodx eval model.onnx --id id_test.npy --id-labels id_labels.npy --ood ood.npy --plot plots/
  oodx eval model.onnx --id digits/ --ood noise.npy --json
""",
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--id",
    "id_path",
    type=_EXISTING,
    required=True,
    help="In-distribution inputs: a .npy/.npz array shaped like the model input, or a folder "
    "of images.",
)
@click.option(
    "--ood",
    "ood_paths",
    type=_EXISTING,
    multiple=True,
    required=True,
    help="OOD inputs, same forms as --id (repeatable: one table row per set).",
)
@click.option(
    "--id-labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Class labels of the ID inputs (.npy of ints) to report accuracy (ACC).",
)
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write roc.png and scores.png (needs matplotlib) into this folder.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(
    model: Path,
    id_path: Path,
    ood_paths: tuple[Path, ...],
    id_labels: Path | None,
    plot_dir: Path | None,
    device: str,
    batch_size: int,
    as_json: bool,
) -> None:
    """OOD metrics of an exported model: AUROC, AUPR-IN, AUPR-OUT, FPR95TPR (and ACC).

    MODEL is an ONNX file written by 'oodx export' or 'oodx demo'. It scores the --id inputs
    and each --ood set (higher score = more OOD; OOD is the positive class) and prints one
    table row per OOD set, plus one for all OOD sets together when there are several.
    Images in folders are read as `oodx score` reads them (see its --help).
    """
    import numpy as np

    from ood_runtime.model import OnnxModel
    from oodx.evaluation import metrics_table, ood_metrics

    try:
        runner = OnnxModel(model, device=device)
    except (ValueError, ImportError) as exc:  # onnxruntime missing: names the extra
        raise UserError(str(exc)) from None
    id_run = _scores(runner, id_path, batch_size)
    labels = None
    if id_labels is not None:
        labels = _read_labels(id_labels, id_run["score"].shape[0])
    taken: set[str] = set()
    ood_runs = {_set_name(p, taken): _scores(runner, p, batch_size) for p in ood_paths}

    def metrics(ood_scores: Any) -> dict[str, float]:
        return ood_metrics(
            id_run["score"],
            ood_scores,
            id_labels=labels,
            id_predictions=id_run["prediction"] if labels is not None else None,
        )

    results = {name: metrics(run["score"]) for name, run in ood_runs.items()}
    if len(ood_runs) > 1:
        results["all"] = metrics(
            np.concatenate([r["score"].reshape(-1) for r in ood_runs.values()])
        )
    plots = {}
    if plot_dir is not None:
        from oodx.evaluation import write_plots

        plots = write_plots(
            id_run["score"],
            {k: v["score"] for k, v in ood_runs.items()},
            plot_dir,
            results=results,
            title=model.name,
            threshold=runner.threshold,
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": str(model),
                    "scorer": runner.metadata.get("scorer"),
                    "n_id": int(id_run["score"].shape[0]),
                    "n_ood": {k: int(v["score"].shape[0]) for k, v in ood_runs.items()},
                    "metrics": results,
                    "plots": {k: str(v) for k, v in plots.items()},
                },
                indent=2,
            )
        )
        return
    scorer = runner.metadata.get("scorer", "?")
    sizes = ", ".join(f"{k} {v['score'].shape[0]}" for k, v in ood_runs.items())
    click.echo(f"{model.name} (scorer {scorer}): ID {id_run['score'].shape[0]}, OOD {sizes}\n")
    click.echo(metrics_table(results))
    for label, path in plots.items():
        click.echo(f"{'ROC curve' if label == 'roc' else 'histogram'}: {path}")
