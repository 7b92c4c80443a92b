"""The body of ``oodx export``: exporter from the registry, options, checkpoint, scorer, call.

An exporter is reached only through ``ood_core.get_info("exporter", NAME)`` and called with the
exporter calling convention (docs/plugins.md, ``oodx_register_exporters``)::

    target(checkpoint, path, *, scorer=resolved, options={...}) -> report

Imports of torch and the exporters happen inside the functions, so ``oodx --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from oodx.errors import UserError

#: ``oodx export`` flags that are exporter options, by option name (the onnx exporter takes all)
OPTION_FLAGS = {
    "opset": "--opset",
    "fp16": "--fp16",
    "calibrate": "--calibrate",
    "tpr": "--tpr",
    "batch_sizes": "--batch-sizes",
    "input_shape": "--input-shape",
    "input_format": "--input-format",
    "mean": "--mean",
    "std": "--std",
    "resize": "--resize",
}


def parse_key_values(items: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict, each VALUE parsed as JSON when it can be."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} must look like KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def exporter(name: str) -> tuple[Any, Any]:
    """``(info, target)`` of the exporter registered as ``name``; a usage error listing the
    installed exporters when there is none."""
    import ood_core
    from ood_core.errors import OODXError

    try:
        info = ood_core.get_info("exporter", name)
    except OODXError as exc:
        installed = ", ".join(i.name for i in ood_core.list_exporters()) or "none"
        raise click.BadParameter(
            f"no exporter named {name!r} ({exc}); installed exporters: {installed} "
            "(`oodx plugins` lists them)",
            param_hint="'--format'",
        ) from None
    return info, ood_core.get_exporter(info.name)


def exporter_options(
    name: str, target: Any, flags: Mapping[str, Any], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The options dict for ``target``: the flags given plus ``--option`` items, each one an
    option the exporter declares (``target.options``); anything else is a usage error."""
    options = {key: value for key, value in flags.items() if value is not None}
    clash = sorted(set(options) & set(extra))
    if clash:
        raise click.UsageError(f"option {clash[0]!r} given both as a flag and with --option")
    options.update(extra)
    declared = tuple(getattr(target, "options", ()) or ())
    for key in options:
        if key not in declared:
            given = OPTION_FLAGS.get(key, f"--option {key}=...")
            takes = ", ".join(declared) if declared else "no options"
            raise click.UsageError(
                f"exporter {name!r} has no option {key!r} ({given}); it takes: {takes}"
            )
    return options


def output_for(checkpoint: Path, output: Path | None, suffix: str) -> Path:
    """``output``, or the checkpoint's name with the exporter's ``suffix``; never the input."""
    out = output or checkpoint.with_suffix(suffix or ".out")
    if out.resolve() == checkpoint.resolve():
        raise UserError(f"output {out} would overwrite the checkpoint; pass -o OUT{suffix}")
    return out


def resolved_scorer(checkpoint: Any, scorer: str | None, kwargs: dict[str, Any]) -> Any:
    """``ood_core.resolve.resolve``'s pick for ``checkpoint`` (``None``: the natural scorer)."""
    from ood_core.resolve import resolve

    try:
        return resolve(checkpoint, scorer, **kwargs)
    except (TypeError, ValueError) as exc:
        from ood_core.errors import OODXError

        if isinstance(exc, OODXError):
            raise
        raise UserError(f"cannot create scorer {scorer!r} with {kwargs}: {exc}") from None


def run_export(
    checkpoint: Path,
    *,
    fmt: str,
    output: Path | None,
    scorer: str | None,
    scorer_kwargs: dict[str, Any],
    flags: dict[str, Any],
    extra: dict[str, Any],
    trust_pickle: bool,
    fit: tuple[Path | None, Path | None] = (None, None),
) -> str:
    """Export ``checkpoint`` with the exporter ``fmt``; the line(s) to print.

    ``flags`` are the exporter-option flags by option name (``None``: not given), ``extra`` the
    ``--option KEY=VALUE`` items, ``fit`` the ``--fit-data`` and ``--fit-labels`` paths.
    """
    import ood_core

    info, target = exporter(fmt)
    out = output_for(checkpoint, output, info.suffix)
    options = exporter_options(info.name, target, flags, extra)
    ckpt = ood_core.load(checkpoint, trust_pickle=trust_pickle)
    if fit[0] is None and fit[1] is not None:
        raise UserError("--fit-labels needs --fit-data (the inputs the labels belong to)")
    if fit[0] is not None:
        picked = fitted_scorer(ckpt, scorer, scorer_kwargs, fit, flags)
    else:
        picked = resolved_scorer(ckpt, scorer, scorer_kwargs)
    report = target(ckpt, out, scorer=picked, options=options)
    return str(report) if report is not None else f"wrote {out} (exporter {info.name!r})"


def fit_inputs(ckpt: Any, fit: tuple[Path, Path | None], flags: Mapping[str, Any]) -> tuple:
    """``(inputs, labels or None)`` from ``--fit-data`` / ``--fit-labels``: a .npy of model
    inputs, or a folder of images read as ``oodx score`` reads them (then ``--mean``/``--std``)."""
    import numpy as np

    from ood_runtime.inputs import load_inputs, read_array

    shape = ckpt.input_shape or [None]
    data, _ = load_inputs(fit[0], shape)
    if fit[0].is_dir() and (flags.get("mean") or flags.get("std")):
        data = (data - _channels(flags.get("mean"), "--mean", 0.0)) / _channels(
            flags.get("std"), "--std", 1.0
        )
    labels = None
    if fit[1] is not None:
        labels = read_array(fit[1])
        if labels.dtype.kind not in "iu" or labels.shape != (data.shape[0],):
            raise UserError(
                f"--fit-labels must be integers, one per --fit-data input ({data.shape[0]},), "
                f"got {labels.dtype} of shape {labels.shape}"
            )
    return np.asarray(data, dtype=np.float32), labels


def _channels(text: str | None, flag: str, default: float) -> Any:
    import numpy as np

    if not text:
        return np.float32(default)
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} must be numbers like 0.5,0.5,0.5, got {text!r}") from None
    return np.asarray(values, dtype=np.float32).reshape(1, -1, *([1] * 2))


def fitted_scorer(
    ckpt: Any, scorer: str | None, kwargs: dict[str, Any], fit: tuple, flags: Mapping[str, Any]
) -> Any:
    """``ood_core.resolve.fit_scorer`` over the fit data in batches, with a progress bar."""
    import io
    import sys

    from ood_core.resolve import fit_scorer

    if scorer is None:
        raise UserError(
            "--fit-data needs --scorer NAME (a scorer to fit; FIT = yes in oodx scorers)"
        )
    data, labels = fit_inputs(ckpt, fit, flags)
    size = 256
    starts = range(0, data.shape[0], size)

    def batches(bar: Any) -> Any:
        for i in bar:
            x = data[i : i + size]
            yield x if labels is None else (x, labels[i : i + size])

    sink = sys.stderr if len(starts) > 1 else io.StringIO()
    with click.progressbar(starts, label=f"fitting on {data.shape[0]} inputs", file=sink) as bar:
        try:
            return fit_scorer(ckpt, scorer, batches(bar), **kwargs)
        except TypeError as exc:
            raise UserError(f"cannot create scorer {scorer!r} with {kwargs}: {exc}") from None
        except ValueError as exc:  # bad fit data (NaN, one class, ...): the scorer says which
            raise UserError(str(exc)) from None


__all__ = [
    "OPTION_FLAGS",
    "exporter",
    "exporter_options",
    "fit_inputs",
    "fitted_scorer",
    "output_for",
    "parse_key_values",
    "resolved_scorer",
    "run_export",
]
