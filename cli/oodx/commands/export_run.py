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
) -> str:
    """Export ``checkpoint`` with the exporter ``fmt``; the line(s) to print.

    ``flags`` are the exporter-option flags by option name (``None``: not given), ``extra`` the
    ``--option KEY=VALUE`` items.
    """
    import ood_core

    info, target = exporter(fmt)
    out = output_for(checkpoint, output, info.suffix)
    options = exporter_options(info.name, target, flags, extra)
    ckpt = ood_core.load(checkpoint, trust_pickle=trust_pickle)
    picked = resolved_scorer(ckpt, scorer, scorer_kwargs)
    report = target(ckpt, out, scorer=picked, options=options)
    return str(report) if report is not None else f"wrote {out} (exporter {info.name!r})"


__all__ = [
    "OPTION_FLAGS",
    "exporter",
    "exporter_options",
    "output_for",
    "parse_key_values",
    "resolved_scorer",
    "run_export",
]
