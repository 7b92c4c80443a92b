"""``oodx export``, ``oodx score`` and ``oodx inspect``: ONNX export, batch scoring, inspection.

Heavy imports (torch, onnx, onnxruntime) happen inside the commands, so ``oodx --help`` stays
fast. User mistakes become :class:`oodx.errors.UserError` (a message, no traceback).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from oodx.errors import UserError

_CPU_HINT = 'pip install "ood-runtime[cpu]"   (or [gpu] for the CUDA build, not both)'


def _is_oodx_error(exc: BaseException) -> bool:
    """An error of oodx's own packages (ood_core's OODXError, ood_runtime's OODRuntimeError),
    recognised by name so that a serving install without ood_core needs nothing imported."""
    names = {("ood_core.errors", "OODXError"), ("ood_runtime.errors", "OODRuntimeError")}
    return any((c.__module__, c.__name__) in names for c in type(exc).__mro__)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn oodx's own errors (and missing optional packages) into one-line user errors."""
    try:
        yield
    except UserError:
        raise
    except ImportError as exc:
        if "onnxruntime" in str(exc):
            raise UserError(str(exc), hint=_CPU_HINT) from None
        if _is_oodx_error(exc):
            raise UserError(str(exc)) from None
        raise
    except Exception as exc:
        if _is_oodx_error(exc):
            raise UserError(str(exc)) from None
        raise


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, (DeprecationWarning, FutureWarning)):
                    continue
                click.secho(f"Warning: {w.message}", fg="yellow", err=True)


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise UserError(
            f"--input-shape must be integers separated by commas (like 3,32,32), got {text!r}"
        ) from None
    if not shape or any(s < 1 for s in shape):
        raise UserError(f"--input-shape must be positive sizes, got {text!r}")
    return shape


# --------------------------------------------------------------------------------------------
# export


@click.command(
    "export",
    epilog="""\b
Examples:
  oodx export model.pt                       # the natural scorer of the model's loss
  oodx export model.pt --scorer mchad
  oodx export model.pt --scorer energy -o energy.onnx --calibrate id_val.npy --tpr 0.95
  oodx export model.pt --scorer msp --fp16 --opset 18
  oodx export model.pt --scorer mahalanobis --fit-data id.npy --fit-labels y.npy
  oodx export legacy.pth --trust-pickle --input-shape 3,32,32 --scorer msp
  oodx export model.pt --format my-format --option key=value
  oodx export model.pt --input-format uint8-nhwc --mean 0.485,0.456,0.406 \\
      --std 0.229,0.224,0.225 --resize 224,224 --calibrate id_raw.npy
""",
)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--scorer",
    "-s",
    help="Registered scorer name (oodx scorers) [default: the natural scorer of the loss].",
)
@click.option(
    "--fit-data",
    type=click.Path(exists=True, path_type=Path),
    help="ID inputs to fit the scorer on (FIT = yes in oodx scorers): a .npy of model inputs "
    "or a folder of images (scaled to [0, 1], resized to the model input, then --mean/--std).",
)
@click.option(
    "--fit-labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Class labels of --fit-data (.npy of integers) [default: the model's predictions].",
)
@click.option(
    "--format",
    "-f",
    "fmt",
    default="onnx",
    show_default=True,
    help="Registered exporter (oodx plugins lists them).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file [default: CHECKPOINT with the exporter's suffix, .onnx for onnx].",
)
@click.option("--opset", type=int, help="ONNX opset (>= 18) [onnx; default 20].")
@click.option("--fp16", is_flag=True, default=None, help="Store the graph in float16 [onnx].")
@click.option(
    "--calibrate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ID inputs (.npy, shaped like the model input) to set the OOD score threshold [onnx].",
)
@click.option(
    "--tpr",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Fraction of the calibration (ID) inputs the threshold keeps as ID [onnx; 0.95].",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help=(
        "Accept a plain torch.save pickle (runs code from the file: only for files you "
        "trust). The one way oodx unpickles; .pt2 archives are checked either way."
    ),
)
@click.option("--input-shape", help="Input shape without batch, for pickles (like 3,32,32).")
@click.option(
    "--scorer-arg",
    multiple=True,
    metavar="KEY=VALUE",
    help="Scorer constructor keyword (repeatable; VALUE parsed as JSON if it can be).",
)
@click.option(
    "--batch-sizes",
    help="Batch sizes verified in onnxruntime against PyTorch [onnx; 1,7].",
)
@click.option(
    "--input-format",
    type=click.Choice(["float", "uint8-nhwc", "uint8-nchw"]),
    help="Graph input: the model's float tensor, or raw uint8 images (NHWC or NCHW) "
    "normalised inside the graph [onnx; float].",
)
@click.option("--mean", help="Per-channel mean of pixels in [0, 1], like 0.485,0.456,0.406 [onnx].")
@click.option("--std", help="Per-channel std of pixels in [0, 1], like 0.229,0.224,0.225 [onnx].")
@click.option(
    "--resize",
    help="H,W (the model's input size): the raw-image graph takes any size and resizes "
    "(bilinear) inside the graph [onnx].",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Exporter option the flags do not cover (repeatable; VALUE parsed as JSON).",
)
def export(
    checkpoint: Path,
    scorer: str | None,
    fit_data: Path | None,
    fit_labels: Path | None,
    fmt: str,
    output: Path | None,
    trust_pickle: bool,
    scorer_arg: tuple[str, ...],
    options: tuple[str, ...],
    **flags: Any,
) -> None:
    """Export a checkpoint and its scorer with a registered exporter (default: ONNX).

    The scorer defaults to the natural scorer of the checkpoint's loss; one the model's outputs
    cannot feed is refused. The ONNX file maps `input` (any batch size) to `output`, `score`
    (higher = more OOD) and `prediction` (class); it is checked in onnxruntime against PyTorch
    before it is written, and on failure nothing is written. Options marked [onnx] go to
    exporters that declare them; others refuse them.
    """
    from oodx.commands.export_run import parse_key_values, run_export

    flags["input_shape"] = _parse_shape(flags["input_shape"])
    if flags["batch_sizes"] is not None:
        try:
            flags["batch_sizes"] = tuple(int(b) for b in flags["batch_sizes"].split(",") if b)
        except ValueError:
            raise UserError(
                f"--batch-sizes must be integers like 1,7, got {flags['batch_sizes']!r}"
            ) from None
    with _user_errors(), _warnings_to_stderr():
        text = run_export(
            checkpoint,
            fmt=fmt,
            output=output,
            scorer=scorer,
            scorer_kwargs=parse_key_values(scorer_arg, "--scorer-arg"),
            fit=(fit_data, fit_labels),
            flags=flags,
            extra=parse_key_values(options, "--option"),
            trust_pickle=trust_pickle,
        )
    click.echo(text)


# --------------------------------------------------------------------------------------------
# score


@click.command(
    "score",
    epilog="""\b
Examples:
  oodx score model.onnx test.npy -o scores.csv
  oodx score model.onnx images/ --device cuda --batch-size 64 -o scores.npz
  oodx score model.onnx test.npy --device cuda --require-gpu
""",
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("inputs", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, cuda or cuda:N (onnxruntime's CUDA provider; warns if it falls back to the CPU).",
)
@click.option("--require-gpu", is_flag=True, help="Fail instead of falling back to the CPU.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write .csv (one row per input) or .npz (all arrays); default: CSV on stdout.",
)
@click.option(
    "--resize-mode",
    type=click.Choice(["stretch", "center-crop", "pad"]),
    default="stretch",
    show_default=True,
    help="How images of another aspect ratio than the model's are fitted: stretched, cropped "
    "to the centre, or padded with black (before any resampling).",
)
def score(
    model: Path,
    inputs: Path,
    device: str,
    require_gpu: bool,
    batch_size: int,
    output: Path | None,
    resize_mode: str,
) -> None:
    """Score inputs with an exported model: OOD score, prediction, is_ood.

    INPUTS is a .npy array shaped like the model input or a folder of images (needs Pillow).
    A model exported with --input-format uint8-* gets the decoded pixels as they are (it
    normalises, and with --resize resizes, inside the graph); a float model gets them scaled
    to [0, 1] and resized to its input size. --resize-mode says how another aspect ratio is
    fitted. `is_ood` (score > threshold) is given when the model was exported with
    --calibrate; a NaN or infinite score, and any input holding NaN or inf, is flagged OOD
    (is_ood 1) whatever its score.
    """
    import numpy as np

    from ood_runtime.inputs import describe_rows, load_inputs, nonfinite_rows

    if output is not None and output.suffix.lower() not in (".csv", ".npz"):
        raise UserError(f"-o must end in .csv or .npz, got {output.name}")
    with _user_errors(), _warnings_to_stderr():
        from ood_runtime.model import OnnxModel

        try:
            runner = OnnxModel(model, device=device, require_gpu=require_gpu)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        data, names = load_inputs(
            inputs, runner.input_shape, preprocess=runner.preprocess, resize_mode=resize_mode
        )
        result = _score_batches(runner, data, batch_size)
    bad_inputs = nonfinite_rows(data)
    if bad_inputs.any():
        click.secho(
            f"Warning: {describe_rows(bad_inputs)} hold NaN or inf; their scores mean nothing"
            + (" and they are flagged OOD" if runner.threshold is not None else ""),
            fg="yellow",
            err=True,
        )
    if runner.threshold is not None:  # the graph's is_ood, else the same rule here
        flagged = result.get("is_ood", runner.is_ood(result["score"])).copy()
        flagged[bad_inputs] = True
        result["is_ood"] = flagged
    n = len(names)
    if output is not None and output.suffix.lower() == ".npz":
        np.savez_compressed(output, names=np.asarray(names), **result)
        click.echo(f"wrote {output} ({n} inputs: {', '.join(result)})", err=True)
        return
    if result["score"].ndim > 1:
        raise UserError(
            "this is a segmentation model (per-pixel scores): write them with -o scores.npz"
        )
    rows = _score_rows(result, names, runner.metadata.get("classes"))
    _write_csv(rows, output)
    if output is not None:
        flagged = f", {int(result['is_ood'].sum())} flagged OOD" if "is_ood" in result else ""
        click.echo(f"wrote {output} ({n} inputs{flagged})", err=True)


def _score_batches(runner: Any, data: Any, batch_size: int) -> dict[str, Any]:
    """The model's outputs over ``data`` in batches (progress on stderr when there are several)."""
    import numpy as np

    if isinstance(data, list):  # raw images of several sizes for a resizing graph
        try:
            return runner.run(data, batch_size=batch_size)
        except Exception as exc:  # noqa: BLE001 - onnxruntime errors on bad input
            raise UserError(f"onnxruntime failed on the images: {exc}") from None
    n = data.shape[0]
    starts = range(0, n, batch_size)
    parts: list[dict[str, Any]] = []
    with click.progressbar(
        starts,
        label=f"scoring {n} inputs",
        file=sys.stderr if len(starts) > 1 else io.StringIO(),
    ) as bar:
        for start in bar:
            try:
                parts.append(runner.run(data[start : start + batch_size]))
            except Exception as exc:  # noqa: BLE001 - onnxruntime errors on bad input
                raise UserError(f"onnxruntime failed on inputs {start}..: {exc}") from None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _score_rows(result: dict[str, Any], names: list[str], classes: Any) -> list[dict[str, Any]]:
    """One CSV row per input: name, score, prediction, class name, is_ood."""
    rows = []
    for i, name in enumerate(names):
        row = {
            "input": name,
            "score": f"{float(result['score'][i]):.7g}",
            "prediction": int(result["prediction"][i]),
        }
        if isinstance(classes, list):
            in_range = 0 <= row["prediction"] < len(classes)
            row["class"] = classes[row["prediction"]] if in_range else ""
        if "is_ood" in result:
            row["is_ood"] = int(bool(result["is_ood"][i]))
        rows.append(row)
    return rows


def _write_csv(rows: list[dict[str, Any]], output: Path | None) -> None:
    """``rows`` as CSV into ``output``, or onto stdout when it is ``None``."""
    if output is None:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------
# inspect


def _type_words(value: dict[str, Any]) -> str:
    dims = ["?" if d is None else str(d) for d in value["shape"] or []]
    return f"{value['dtype']}[{', '.join(dims)}]"


@click.command(
    "inspect",
    epilog="""\b
Examples:
  oodx inspect model.onnx
  oodx inspect model.onnx --json
  oodx inspect model.pt          (a checkpoint: loss, keywords, classes)
""",
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect(model: Path, as_json: bool) -> None:
    """Describe an exported model (inputs, outputs, oodx metadata) or a checkpoint, in words."""
    with open(model, "rb") as f:
        head = f.read(2)
    if head == b"PK" or head[:1] == b"\x80":  # a zip or pickle: a checkpoint, not ONNX
        _inspect_checkpoint(model, as_json)
        return
    from ood_runtime.metadata import decode_metadata
    from ood_runtime.onnxfile import describe_onnx

    try:
        info = describe_onnx(model)  # refuses empty and non-protobuf files; no onnx needed
    except ValueError as exc:
        raise UserError(str(exc)) from None
    inputs = [(i["name"], _type_words(i)) for i in info["inputs"]]
    outputs = [(o["name"], _type_words(o)) for o in info["outputs"]]
    props = info["metadata_props"]
    meta = decode_metadata(props)
    opsets = info["opsets"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(model),
                    "size_bytes": model.stat().st_size,
                    "producer": f"{info['producer_name']} {info['producer_version']}".strip(),
                    "doc_string": info["doc_string"],
                    "ir_version": info["ir_version"],
                    "opset": opsets,
                    "nodes": info["nodes"],
                    "inputs": dict(inputs),
                    "outputs": dict(outputs),
                    "oodx": meta,
                    "other_metadata": {k: v for k, v in props.items() if not k.startswith("oodx.")},
                },
                indent=2,
            )
        )
        return
    lines = [
        f"{model} ({model.stat().st_size / 1e6:.2f} MB), made by "
        f"{info['producer_name'] or 'unknown'} {info['producer_version']}, ONNX opset "
        f"{opsets.get('ai.onnx', '?')}, {info['nodes']} nodes",
        *([info["doc_string"]] if info["doc_string"] else []),
        "inputs:",
        *(f"  {name}: {words}" for name, words in inputs),
        "outputs:",
        *(f"  {name}: {words}" for name, words in outputs),
    ]
    if not meta:
        lines.append("no oodx metadata: this file was not written by `oodx export`.")
    else:
        convention = meta.get("score_convention", "?")
        lines += [
            f"scorer: {meta.get('scorer', '?')} (reads the model's {meta.get('scorer_reads', '?')}); "
            f"score convention: {convention}"
            + (" (higher score = more likely OOD)" if convention == "higher-is-ood" else ""),
            f"task: {meta.get('task', '?')}; input shape {meta.get('input_shape')} "
            f"({meta.get('input_dtype', '?')}, null = any batch size)",
            f"trained with loss: {meta.get('loss') or '(unknown)'}"
            + (f" {meta.get('loss_kwargs')}" if meta.get("loss_kwargs") else ""),
        ]
        classes = meta.get("classes")
        lines.append(
            f"classes ({len(classes)}): {', '.join(map(str, classes))}"
            if isinstance(classes, list)
            else "classes: not recorded (predictions are class indices)"
        )
        if meta.get("threshold") is not None:
            lines.append(
                f"threshold: {meta['threshold']:.6g}, calibrated for TPR "
                f"{float(meta.get('threshold_tpr', 0)):.0%} (keeps that share of "
                f"{meta.get('calibration_samples', '?')} ID calibration inputs as ID; score > "
                "threshold or a non-finite score = OOD"
                + ("; the graph outputs is_ood)" if "is_ood" in dict(outputs) else ")")
            )
        pre = meta.get("preprocess")
        if isinstance(pre, dict):
            resize = pre.get("resize")
            lines.append(
                f"preprocessing in the graph: raw {pre.get('color')} uint8 {pre.get('layout')} "
                f"{'of any size, resized to ' + str(resize.get('size')) if resize else 'images'}, "
                f"normalised with mean {pre.get('mean')} std {pre.get('std')} (x / 255)"
            )
        if meta.get("extra"):
            lines.append(f"extra: {json.dumps(meta['extra'])}")
        else:
            lines.append("threshold: none (export with --calibrate ID.npy to set one)")
        lines.append(
            f"precision: {'float16 inside, float32 in/out' if meta.get('fp16') == 'true' else 'float32'}"
        )
        plugins = meta.get("plugins")
        if isinstance(plugins, dict):
            lines.append("made with: " + ", ".join(f"{k} {v}" for k, v in plugins.items()))
        lines.append(
            f"oodx format {meta.get('format_version', '?')}, exported {meta.get('created', '?')} "
            f"with torch {meta.get('torch', '?')}"
        )
    click.echo("\n".join(lines))


def _inspect_checkpoint(path: Path, as_json: bool) -> None:
    """Describe a checkpoint from its manifest, after the archive checks (no torch, no unpickling)."""
    import zipfile

    from oodx.errors import require

    require(
        "ood_core",
        package="ood-core",
        purpose="inspecting a checkpoint",
        install='pip install "oodx[train]"',
    )
    from ood_core.archive import open_archive
    from ood_core.errors import CheckpointError

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        if path.read_bytes()[:1] == b"\x80":
            raise UserError(
                f"{path} is a legacy torch.save pickle; oodx reads it only with --trust-pickle"
            ) from None
        raise UserError(f"{path} is truncated or corrupted (unreadable zip archive)") from None
    pt2 = any(n == "archive_format" or n.endswith("/archive_format") for n in names)
    manifest = None
    if pt2:  # the same allow-list and schema checks as loading: a refused file is reported so
        try:
            arc = open_archive(path)
        except CheckpointError as exc:
            raise UserError(str(exc)) from None
        manifest = arc.manifest
        arc.close()
    if manifest is None:
        if not pt2 and not any(n.endswith("data.pkl") for n in names):
            raise UserError(
                f"{path} is a zip archive but not an oodx checkpoint (no PT2 archive, no "
                "torch.save pickle)"
            )
        kind = (
            "a torch.export archive (.pt2) without oodx metadata: exportable, no loss state"
            if pt2
            else "a torch.save pickle: export needs --trust-pickle (unpickling runs code)"
        )
        if as_json:
            click.echo(json.dumps({"file": str(path), "kind": kind}, indent=2))
        else:
            click.echo(f"{path}: {kind}")
        return
    if as_json:
        click.echo(json.dumps({"file": str(path), "kind": "oodx checkpoint", **manifest}, indent=2))
        return
    loss = manifest.get("loss") or {}
    model = manifest.get("model") or {}
    classes = manifest.get("classes")
    lines = [
        f"{path} ({path.stat().st_size / 1e6:.2f} MB): oodx checkpoint, format "
        f"{manifest.get('format_version')}, saved {manifest.get('created', '?')} with torch "
        f"{manifest.get('torch', '?')}",
        f"model: {model.get('class', '?')} as a torch.export program; input "
        f"{model.get('input_shape')} ({model.get('input_dtype', '?')}, null = any batch size)",
        (
            f"loss: {loss.get('name')} {loss.get('kwargs')} from {loss.get('distribution') or '?'} "
            f"{loss.get('version', '')}; {len(loss.get('state') or {})} state tensor(s); natural "
            f"scorer: {loss.get('scorer') or '(none)'}"
            if loss
            else "loss: none saved (scorers that need loss state cannot be exported)"
        ),
        f"classes ({len(classes)}): {', '.join(map(str, classes))}"
        if isinstance(classes, list)
        else "classes: not recorded",
        "needs: " + ", ".join(f"{k} {v}" for k, v in (manifest.get("plugins") or {}).items()),
    ]
    if manifest.get("extra"):
        lines.append(f"extra: {json.dumps(manifest['extra'])}")
    click.echo("\n".join(lines))


__all__ = ["export", "inspect", "score"]
