"""``oodx plugins``, ``oodx plugins check``, ``oodx losses``, ``oodx scorers``.

Listing reads registrations only (lazy targets), so it imports no torch and answers fast;
``oodx plugins check`` goes further and imports every target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import click

from oodx.table import format_table

_OK = ("ok",)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _name_with_aliases(info: Any) -> str:
    return info.name + (f" ({', '.join(info.aliases)})" if info.aliases else "")


def _registers(plugin: Any) -> str:
    parts = []
    for kind, plural in (("loss", "losses"), ("scorer", "scorers"), ("exporter", "exporters")):
        names = plugin.registered.get(kind, [])
        if names:
            parts.append(f"{plural if len(names) > 1 else kind}: {', '.join(names)}")
    return "; ".join(parts) or "-"


def _load_time(plugin: Any) -> str:
    """How long loading the plugin took (import plus hooks), for the table."""
    if plugin.import_seconds is None:
        return "-"
    total = plugin.import_seconds + plugin.hook_seconds
    return f"{total * 1000:.0f} ms" if total < 1 else f"{total:.1f} s"


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins: distribution, version, load time, status, what each registers.

    A broken plugin (fails to import, raises in a hook, registers a duplicate name, targets
    another plugin API) is listed with its error; every other plugin keeps working. A name two
    distributions register is a clash: it is refused until one of them is disabled.
    OODX_DISABLE_PLUGINS=a,b blocks plugins, OODX_PLUGINS=a,b loads only those. A plugin slower
    to load than OODX_PLUGIN_IMPORT_BUDGET seconds (default 0.5) is warned about.

    \b
    Examples:
      oodx plugins
      oodx plugins --json
      oodx plugins check        # import every target, exit 1 if anything is broken
    """
    if ctx.invoked_subcommand is not None:
        return
    import ood_core

    found = ood_core.list_plugins()
    if as_json:
        _emit_json([p.to_dict() for p in found])
        return
    rows = [
        (p.name, p.distribution or "-", p.version or "-", _load_time(p), p.status, _registers(p))
        for p in found
    ]
    header = ["PLUGIN", "DISTRIBUTION", "VERSION", "LOAD", "STATUS", "REGISTERS"]
    click.echo(format_table(header, rows))
    for title, attr in (("Problems", "errors"), ("Slow plugins", "warnings")):
        lines = [f"  {p.name} ({p.status}): {m}" for p in found for m in getattr(p, attr)]
        if lines:
            click.echo(f"\n{title}:\n" + "\n".join(lines))
    if any(p.errors and p.status not in ("ok", "disabled") for p in found):
        click.echo("\nOther plugins are unaffected. Run 'oodx plugins check' for details.")


# --------------------------------------------------------------------------------------------
# oodx plugins check

_LIGHTNESS_PROBE = (
    "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(m for m in ('torch', 'numpy.testing', 'onnx', 'onnxruntime') "
    "if m in sys.modules)))"
)


def _heavy_imports(module: str) -> list[str] | str:
    """Heavy modules importing ``module`` pulls in (in a fresh interpreter), or an error text."""
    proc = subprocess.run(
        [sys.executable, "-c", _LIGHTNESS_PROBE, module],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _importable(module: str) -> bool:
    import importlib.util

    if module in sys.modules and getattr(sys.modules[module], "__spec__", None) is None:
        return False  # built in memory (tests, embedding), not from a file
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _natural_scorer_problems(registry: Any, label: str, loss: Any) -> list[str]:
    """Why ``ood_core.resolve`` would refuse a model trained with ``loss`` its natural scorer
    (the rules live there: :func:`ood_core.resolve.check_pairing`)."""
    from ood_core.resolve import ResolveError, check_pairing

    try:
        check_pairing(loss, registry=registry)
    except ResolveError as exc:
        return [f"{label}: a model trained with it cannot use its natural scorer: {exc}"]
    return []


def check_plugin(registry: Any, plugin: Any) -> tuple[list[str], list[str]]:
    """Problems (fail the check) and notes (do not) of one discovered plugin."""
    problems: list[str] = []
    notes: list[str] = []
    if plugin.status == "disabled":
        notes.extend(plugin.errors)
        return problems, notes
    problems.extend(f"{plugin.status}: {e}" for e in plugin.errors)
    notes.extend(plugin.warnings)
    if plugin.status in ("error", "incompatible"):
        return problems, notes
    if plugin.module and not _importable(plugin.module):
        notes.append(f"module {plugin.module} is not importable by name; lightness not checked")
    elif plugin.module:
        heavy = _heavy_imports(plugin.module)
        if isinstance(heavy, str):
            problems.append(f"entry-point module {plugin.module} fails to import: {heavy}")
        elif heavy:
            problems.append(
                f"entry-point module {plugin.module} imports {', '.join(heavy)}; it must import "
                "only ood_core's hook marker (make targets lazy 'module:Attribute' strings)"
            )
    scorer_names = {s.name for s in registry.items("scorer")}
    for kind in ("loss", "scorer", "exporter"):
        for info in registry.items(kind):
            if info.plugin != plugin.name:
                continue
            label = f"{kind} {info.name!r}"
            if kind == "loss":
                if info.scorer in registry.clashes["scorer"]:
                    problems.append(
                        f"{label}: its natural scorer {info.scorer!r} is refused: more than one "
                        "distribution registers it"
                    )
                elif info.scorer and info.scorer not in scorer_names:
                    problems.append(
                        f"{label}: its natural scorer {info.scorer!r} is not registered by any "
                        "installed plugin"
                    )
                elif info.scorer:
                    scorer = registry.get("scorer", info.scorer)
                    missing = [t for t in info.tasks if t not in scorer.tasks]
                    if missing:
                        problems.append(
                            f"{label}: supports {', '.join(missing)} but its scorer "
                            f"{scorer.name!r} does not"
                        )
                    problems.extend(_natural_scorer_problems(registry, label, info))
                if not info.paper:
                    notes.append(f"{label}: no paper reference")
            try:
                obj = info.load()
            except Exception as exc:  # noqa: BLE001 - reported
                text = str(exc)
                problems.append(text if text.startswith(label) else f"{label}: {text}")
                continue
            if not callable(obj):
                problems.append(f"{label}: target {info.target} is not callable")
            if not (getattr(obj, "__doc__", None) or "").strip():
                notes.append(f"{label}: target {info.target} has no docstring")
            if (
                kind == "loss"
                and isinstance(obj, type)
                and not callable(getattr(obj, "scorer", None))
            ):
                problems.append(f"{label}: {info.target} has no scorer() method")
    return problems, notes


@plugins.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def check(as_json: bool) -> None:
    """Check every plugin: imports its targets and checks its metadata; exit 1 on any problem.

    Checks that each plugin loaded, that its entry-point module imports no torch, that every
    registered target imports and is callable, that a loss's natural scorer is registered,
    covers the loss's tasks and can be fed by a model trained with the loss (the rules of
    ood_core.resolve), and that a loss class offers scorer(). Disabled plugins are noted, not
    failed.

    \b
    Example:
      oodx plugins check && echo "all plugins are healthy"
    """
    from ood_core.registry import get_registry

    registry = get_registry()
    results = []
    for plugin in sorted(registry.plugins.values(), key=lambda p: (p.name != "builtin", p.name)):
        problems, notes = check_plugin(registry, plugin)
        results.append((plugin, problems, notes))
    failed = [r for r in results if r[1]]
    if as_json:
        _emit_json(
            [
                {
                    "plugin": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "status": p.status,
                    "ok": not problems,
                    "problems": problems,
                    "notes": notes,
                }
                for p, problems, notes in results
            ]
        )
    else:
        for plugin, problems, notes in results:
            mark = "FAIL" if problems else ("skip" if plugin.status == "disabled" else "ok")
            where = f"{plugin.distribution} {plugin.version}".strip() or plugin.module
            click.echo(f"{mark:<4}  {plugin.name} ({where})")
            for problem in problems:
                click.echo(f"        problem: {problem}")
            for note in notes:
                click.echo(f"        note: {note}")
        n = len(results)
        click.echo(
            f"\n{len(failed)} of {n} plugin(s) failed the check."
            if failed
            else f"\nAll {n} plugin(s) passed."
        )
    if failed:
        sys.exit(1)


# --------------------------------------------------------------------------------------------
# oodx losses / oodx scorers


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--task",
    type=click.Choice(["classification", "segmentation"]),
    help="Only losses that support this task.",
)
def losses(as_json: bool, task: str | None) -> None:
    """List losses: name (aliases), plugin, tasks, whether training needs OOD data, the natural
    scorer and the paper.

    \b
    Examples:
      oodx losses
      oodx losses --task segmentation
      oodx demo --loss outlier-exposure     # train with one of them
    """
    import ood_core

    found = [i for i in ood_core.list_losses() if task is None or task in i.tasks]
    if as_json:
        _emit_json([i.to_dict() for i in found])
        return
    rows = [
        (
            _name_with_aliases(i),
            i.plugin,
            ", ".join(i.tasks),
            _yes(i.uses_ood),
            i.scorer or "-",
            i.paper or "-",
        )
        for i in found
    ]
    click.echo(
        format_table(["LOSS", "PLUGIN", "TASKS", "OOD DATA", "SCORER", "PAPER"], rows)
        if rows
        else "No losses are installed."
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--task",
    type=click.Choice(["classification", "segmentation"]),
    help="Only scorers that support this task.",
)
def scorers(as_json: bool, task: str | None) -> None:
    """List scorers: name (aliases), plugin, the model output it reads, whether it must be
    fitted, whether it exports (gradient and stochastic scorers run in PyTorch only), tasks and
    the paper. Every scorer returns outlier scores (higher = more OOD).

    \b
    Examples:
      oodx scorers
      oodx scorers --json
    """
    import ood_core

    found = [i for i in ood_core.list_scorers() if task is None or task in i.tasks]
    if as_json:
        _emit_json([i.to_dict() for i in found])
        return
    rows = [
        (
            _name_with_aliases(i),
            i.plugin,
            i.reads if isinstance(i.reads, str) else " + ".join(i.reads),
            _yes(i.needs_fit),
            _yes(i.exportable),
            ", ".join(i.tasks),
            i.paper or "-",
        )
        for i in found
    ]
    click.echo(
        format_table(["SCORER", "PLUGIN", "READS", "FIT", "EXPORT", "TASKS", "PAPER"], rows)
        if rows
        else "No scorers are installed."
    )
