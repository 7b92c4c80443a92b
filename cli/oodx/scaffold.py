"""Render the plugin templates (package data under ``oodx/templates/plugin``) into a folder.

Template files end in ``.tmpl`` and use ``{{key}}`` placeholders; the folder ``PACKAGE`` becomes
the plugin's import package. Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from oodx.errors import UserError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
SUFFIX = ".tmpl"


@dataclass(frozen=True)
class PluginNames:
    """Every spelling of a plugin's name the templates use."""

    name: str  # registered name: my-method
    dist: str  # distribution: ood-plugin-my-method
    module: str  # import package: ood_plugin_my_method
    title: str  # My Method
    loss_class: str  # MyMethodLoss
    scorer_class: str  # MyMethodScorer

    @classmethod
    def from_name(cls, raw: str) -> PluginNames:
        from ood_core.registry import MAX_NAME_LENGTH, is_valid_name

        name = raw.strip().lower().replace("_", "-")
        for prefix in ("ood-plugin-", "oodx-"):
            name = name.removeprefix(prefix)
        if len(name) > MAX_NAME_LENGTH:
            raise UserError(
                f"plugin name {name[:24] + '...'!r} is {len(name)} characters long; oodx names "
                f"have at most {MAX_NAME_LENGTH}",
                "pick a shorter name, for example: oodx new-plugin my-method",
            )
        if not is_valid_name(name):
            raise UserError(
                f"plugin name {raw!r} is not valid: use lowercase letters, digits and '-', "
                "starting with a letter",
                "for example: oodx new-plugin my-method",
            )
        camel = "".join(part.capitalize() for part in name.split("-"))
        return cls(
            name=name,
            dist=f"ood-plugin-{name}",
            module=f"ood_plugin_{name.replace('-', '_')}",
            title=" ".join(part.capitalize() for part in name.split("-")),
            loss_class=f"{camel}Loss",
            scorer_class=f"{camel}Scorer",
        )


def installed_clashes(names: PluginNames) -> list[str]:
    """One line per installed distribution the new plugin would clash with, naming what clashes.

    Checks the distribution name, the entry-point (plugin) name, the import package and the
    loss/scorer name against what is installed and discovered.
    """
    from importlib import metadata, util

    from ood_core.errors import UnknownNameError
    from ood_core.registry import NameClashError, get_registry

    found: dict[str, list[str]] = {}
    try:
        dist = metadata.distribution(names.dist)
        found.setdefault(f"{names.dist} {dist.version}", []).append("the distribution name")
    except metadata.PackageNotFoundError:
        pass
    registry = get_registry()
    if names.name in registry.plugins:
        plugin = registry.plugins[names.name]
        where = f"{plugin.distribution} {plugin.version}".strip() or plugin.module
        found.setdefault(where, []).append(f"the plugin name {names.name!r}")
    for kind in ("loss", "scorer"):
        try:
            claims = [registry.get(kind, names.name)]
        except NameClashError as exc:
            claims = list(exc.claims)
        except UnknownNameError:
            claims = []
        for info in claims:
            where = f"{info.distribution} {info.version}".strip() or info.plugin
            found.setdefault(where, []).append(f"the {kind} name {names.name!r}")
    try:
        spec = util.find_spec(names.module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and not found:
        found[spec.origin or names.module] = [f"the import package {names.module}"]
    return [f"{where}: {', '.join(what)}" for where, what in found.items()]


def template_root() -> Traversable:
    """The plugin template folder inside the installed ``oodx`` package."""
    return resources.files("oodx") / "templates" / "plugin"


def _walk(node: Traversable, rel: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    out = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            out.extend(_walk(child, (*rel, child.name)))
        elif child.name.endswith(SUFFIX):
            out.append(((*rel, child.name.removesuffix(SUFFIX)), child.read_text(encoding="utf-8")))
    return out


def render(text: str, values: dict[str, str], where: str = "template") -> str:
    """Replace every ``{{key}}``; an unknown key is a bug in the template."""

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"{where}: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(sub, text)


def scaffold(
    raw_name: str, directory: Path | None = None, *, force: bool = False
) -> tuple[Path, list[Path]]:
    """Write a new plugin distribution; returns its folder and the files written."""
    from ood_core import __version__ as core_version
    from ood_core.hookspecs import PLUGIN_API_VERSION

    names = PluginNames.from_name(raw_name)
    target = Path(directory) if directory is not None else Path.cwd() / names.dist
    if target.exists() and any(target.iterdir()) and not force:
        raise UserError(
            f"{target} exists and is not empty; nothing was written.",
            "pick another --dir, or pass --force to overwrite the scaffold's files",
        )
    major, minor = (int(p) for p in core_version.split(".")[:2])
    values = {
        **{k: getattr(names, k) for k in PluginNames.__dataclass_fields__},
        "api": str(PLUGIN_API_VERSION),
        "core_requirement": f"ood-core>={major}.{minor},<{major}.{minor + 1}",
    }
    written = []
    for rel, text in _walk(template_root()):
        parts = [names.module if p == "PACKAGE" else p for p in rel]
        path = target.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(text, values, "/".join(rel)), encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"cannot write {path}: {exc.strerror or exc}",
                "pick another --dir, one you can write to",
            ) from exc
        written.append(path)
    return target, written
