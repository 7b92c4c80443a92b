"""Plugin discovery and the registry of losses, scorers and exporters.

Discovery reads the ``oodx`` entry-point group, imports each plugin's light entry-point module
(which imports only :mod:`ood_core.hookspec`), checks the plugin API version it declares and calls
its hooks with a ``register`` callback. Registrations hold metadata and a lazy ``"module:attr"``
target, so nothing here imports torch or a method's code. Every fault is confined to the plugin
that caused it: it is recorded on that plugin's :class:`PluginInfo` and the plugin (or just the
faulty registration) is skipped.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import pluggy

from ood_core import hookspecs as _hookspec
from ood_core.errors import PluginLoadError, RegistrationError, UnknownNameError

BUILTIN_PLUGIN = "builtin"
TASKS = ("classification", "segmentation")
MODEL_OUTPUTS = ("logits", "embedding", "features")
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


# --------------------------------------------------------------------------------------------
# registrations


@dataclass(frozen=True)
class _Info:
    """Fields every registration has; ``plugin``/``distribution``/``version`` are set by the core."""

    kind: ClassVar[str] = ""
    name: str
    target: str
    summary: str
    aliases: tuple[str, ...] = ()
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    def load(self) -> Any:
        """Import and return the registered object (the lazy target)."""
        return get_registry().resolve(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["kind"] = self.kind
        return out


@dataclass(frozen=True)
class LossInfo(_Info):
    """A registered loss.

    ``inputs`` names what ``forward`` takes, in order, from ``logits``, ``embedding``,
    ``features``, ``target`` and method-specific names (documented by the plugin).
    """

    kind: ClassVar[str] = "loss"
    paper: str = ""
    tasks: tuple[str, ...] = ("classification",)
    uses_ood: bool = False
    scorer: str = ""
    inputs: tuple[str, ...] = ("logits", "target")


@dataclass(frozen=True)
class ScorerInfo(_Info):
    """A registered scorer. ``reads`` is the model output it maps to outlier scores."""

    kind: ClassVar[str] = "scorer"
    reads: str = "logits"
    needs_fit: bool = False
    tasks: tuple[str, ...] = ("classification",)
    paper: str = ""
    needs_loss_state: bool = False
    exportable: bool = True


@dataclass(frozen=True)
class ExporterInfo(_Info):
    """A registered exporter; ``suffix`` is the file suffix of what it writes."""

    kind: ClassVar[str] = "exporter"
    suffix: str = ""


INFO_TYPES: dict[str, type[_Info]] = {
    "loss": LossInfo,
    "scorer": ScorerInfo,
    "exporter": ExporterInfo,
}
_HOOK_KIND = {
    "oodx_register_losses": "loss",
    "oodx_register_scorers": "scorer",
    "oodx_register_exporters": "exporter",
}
_CORE_FIELDS = {"plugin", "distribution", "version"}
_REQUIRED = {
    "loss": ("name", "target", "summary", "paper", "tasks", "uses_ood", "scorer", "inputs"),
    "scorer": ("name", "target", "summary", "reads", "needs_fit", "tasks"),
    "exporter": ("name", "target", "summary", "suffix"),
}


def _as_str_tuple(value: Any, field_name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        raise RegistrationError(
            f"field {field_name!r} must be a tuple of strings, got {type(value).__name__}: {value!r}"
        )
    return tuple(value)


def make_info(kind: str, fields: Mapping[str, Any]) -> _Info:
    """Validate the keywords one ``register(...)`` call got and build the info object."""
    cls = INFO_TYPES[kind]
    allowed = {f.name for f in dataclasses.fields(cls)} - _CORE_FIELDS
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise RegistrationError(
            f"unknown {kind} field(s) {unknown}; expected some of {sorted(allowed)}"
        )
    missing = [f for f in _REQUIRED[kind] if f not in fields]
    if missing:
        raise RegistrationError(f"{kind} registration is missing required field(s) {missing}")
    values = dict(fields)
    name = values["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistrationError(
            f"{kind} name must be lowercase letters, digits and '-' (like 'outlier-exposure'), "
            f"got {name!r}"
        )
    target = values["target"]
    if not isinstance(target, str) or not _TARGET_RE.match(target):
        raise RegistrationError(
            f"{kind} {name!r}: target must be a lazy reference 'package.module:Attribute', "
            f"got {target!r}"
        )
    for key in ("summary", "paper", "scorer", "reads", "suffix"):
        if key in values and not isinstance(values[key], str):
            raise RegistrationError(
                f"{kind} {name!r}: field {key!r} must be a string, got {values[key]!r}"
            )
    if not values["summary"].strip():
        raise RegistrationError(f"{kind} {name!r}: field 'summary' must not be empty")
    for key in ("uses_ood", "needs_fit", "needs_loss_state", "exportable"):
        if key in values and not isinstance(values[key], bool):
            raise RegistrationError(
                f"{kind} {name!r}: field {key!r} must be True or False, got {values[key]!r}"
            )
    for key in ("aliases", "tasks", "inputs"):
        if key in values:
            values[key] = _as_str_tuple(values[key], key)
    for alias in values.get("aliases", ()):
        if not _NAME_RE.match(alias):
            raise RegistrationError(f"{kind} {name!r}: alias {alias!r} is not a valid name")
    if "tasks" in values:
        bad = [t for t in values["tasks"] if t not in TASKS]
        if bad or not values["tasks"]:
            raise RegistrationError(
                f"{kind} {name!r}: tasks must be a non-empty subset of {TASKS}, got "
                f"{values['tasks']!r}"
            )
    if kind == "scorer" and values["reads"] not in MODEL_OUTPUTS:
        raise RegistrationError(
            f"scorer {name!r}: reads must be one of {MODEL_OUTPUTS}, got {values['reads']!r}"
        )
    if kind == "loss":
        if not values["inputs"]:
            raise RegistrationError(f"loss {name!r}: inputs must name forward's arguments")
        if values["scorer"] and not _NAME_RE.match(values["scorer"]):
            raise RegistrationError(f"loss {name!r}: scorer {values['scorer']!r} is not a name")
    return cls(**values)


# --------------------------------------------------------------------------------------------
# plugins


@dataclass
class PluginInfo:
    """One plugin as discovered: where it came from, its status and what it registered.

    ``status`` is ``ok``, ``partial`` (loaded, some registrations rejected), ``error`` (nothing
    registered), ``incompatible`` (targets another plugin API), ``disabled`` (by
    ``OODX_DISABLE_PLUGINS``/``OODX_PLUGINS``).
    """

    name: str
    distribution: str = ""
    version: str = ""
    module: str = ""
    api: int | None = None
    status: str = "ok"
    errors: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(
        default_factory=lambda: {"loss": [], "scorer": [], "exporter": []}
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _fail(self, message: str, *, fatal: bool) -> None:
        self.errors.append(message)
        if fatal:
            self.status = "error"
        elif self.status == "ok":
            self.status = "partial"


@dataclass
class _Candidate:
    name: str
    load: Callable[[], Any]
    distribution: str = ""
    version: str = ""
    module: str = ""


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _entry_point_candidates() -> list[_Candidate]:
    eps = metadata.entry_points(group=_hookspec.ENTRY_POINT_GROUP)
    out: list[_Candidate] = []
    seen: set[tuple[str, str]] = set()
    for ep in eps:
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else ""
        key = (ep.name, ep.value)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        out.append(
            _Candidate(
                name=ep.name,
                load=ep.load,
                distribution=dist_name or "",
                version=dist.version if dist is not None else "",
                module=ep.value.split(":")[0],
            )
        )
    out.sort(key=lambda c: (c.name, c.distribution))
    return out


def _builtin_candidate() -> _Candidate:
    from ood_core import __version__

    return _Candidate(
        name=BUILTIN_PLUGIN,
        load=lambda: importlib.import_module("ood_core.builtin.plugin"),
        distribution="ood-core",
        version=__version__,
        module="ood_core.builtin.plugin",
    )


def _suggest(hook_name: str) -> str:
    close = difflib.get_close_matches(hook_name, _hookspec.HOOK_NAMES, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    """Plugins and what they registered; build it with :meth:`discover` or :meth:`from_plugins`."""

    def __init__(self) -> None:
        self.plugins: dict[str, PluginInfo] = {}
        self._items: dict[str, dict[str, _Info]] = {k: {} for k in INFO_TYPES}
        self._aliases: dict[str, dict[str, str]] = {k: {} for k in INFO_TYPES}
        self._resolved: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.pm = pluggy.PluginManager(_hookspec.PROJECT_NAME)
        self.pm.add_hookspecs(_hookspec)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def discover(cls, *, builtin: bool = True) -> Registry:
        """Registry of the built-in plugin and every installed ``oodx`` entry point."""
        candidates = [_builtin_candidate()] if builtin else []
        candidates += _entry_point_candidates()
        reg = cls()
        reg._load_all(candidates)
        return reg

    @classmethod
    def from_plugins(
        cls, plugins: Iterable[tuple[str, Any]] | Mapping[str, Any], *, builtin: bool = True
    ) -> Registry:
        """Registry of the built-in plugin plus the given ``(name, module_or_object)`` pairs.

        Meant for tests and embedding; the objects go through exactly the checks that
        entry-point plugins go through.
        """
        items = plugins.items() if isinstance(plugins, Mapping) else plugins
        candidates = [_builtin_candidate()] if builtin else []
        for name, obj in items:
            candidates.append(
                _Candidate(name=name, load=lambda obj=obj: obj, module=getattr(obj, "__name__", ""))
            )
        reg = cls()
        reg._load_all(candidates)
        return reg

    def _load_all(self, candidates: list[_Candidate]) -> None:
        allow = _env_names("OODX_PLUGINS")
        deny = _env_names("OODX_DISABLE_PLUGINS") or set()
        loaded: list[tuple[PluginInfo, Any]] = []
        for cand in candidates:
            info = PluginInfo(
                name=cand.name,
                distribution=cand.distribution,
                version=cand.version,
                module=cand.module,
            )
            if cand.name in self.plugins:
                first = self.plugins[cand.name]
                info.status = "error"
                info.errors.append(
                    f"plugin name {cand.name!r} is already used by distribution "
                    f"{first.distribution or first.module!r}; this one is skipped"
                )
                self.plugins[f"{cand.name}@{cand.distribution or cand.module}"] = info
                continue
            self.plugins[cand.name] = info
            if cand.name != BUILTIN_PLUGIN:
                names = {cand.name, cand.distribution}
                if names & deny:
                    info.status = "disabled"
                    info.errors.append("disabled by OODX_DISABLE_PLUGINS")
                    continue
                if allow is not None and not names & allow:
                    info.status = "disabled"
                    info.errors.append("not listed in OODX_PLUGINS")
                    continue
            obj = self._import_plugin(info, cand)
            if obj is not None:
                loaded.append((info, obj))
        for hook_name in _hookspec.HOOK_NAMES:
            for info, _obj in loaded:
                if info.status in ("ok", "partial"):
                    self._call_hook(info, hook_name)

    def _import_plugin(self, info: PluginInfo, cand: _Candidate) -> Any | None:
        try:
            obj = cand.load()
        except (Exception, SystemExit) as exc:  # a plugin may raise anything at import
            info._fail(f"failed to import {cand.module or cand.name}: {_describe(exc)}", fatal=True)
            return None
        if not info.module:
            info.module = getattr(obj, "__name__", type(obj).__name__)
        if cand.name != BUILTIN_PLUGIN:
            api = getattr(obj, "OODX_PLUGIN_API", None)
            info.api = api if isinstance(api, int) else None
            if api is None:
                info.status = "incompatible"
                info.errors.append(
                    f"{info.module} does not declare the plugin API it targets; add "
                    f"'OODX_PLUGIN_API = {_hookspec.PLUGIN_API_VERSION}' to it"
                )
                return None
            if api != _hookspec.PLUGIN_API_VERSION:
                info.status = "incompatible"
                from ood_core import __version__

                if isinstance(api, int) and api > _hookspec.PLUGIN_API_VERSION:
                    advice = (
                        f"upgrade ood-core (pip install -U ood-core; {__version__} is installed)"
                    )
                else:
                    advice = f"upgrade {info.distribution or info.name} to a release for API "
                    advice += f"{_hookspec.PLUGIN_API_VERSION}"
                info.errors.append(
                    f"targets oodx plugin API {api!r} but ood-core {__version__} provides API "
                    f"{_hookspec.PLUGIN_API_VERSION}: {advice}"
                )
                return None
        else:
            info.api = _hookspec.PLUGIN_API_VERSION
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:  # pluggy validation: wrong hook arguments and the like
            info._fail(f"invalid hook implementation: {_describe(exc)}", fatal=True)
            return None
        unknown = [hc.name for hc in self.pm.get_hookcallers(obj) or [] if hc.spec is None]
        if unknown:
            self.pm.unregister(obj)
            for hook_name in unknown:
                info._fail(
                    f"implements unknown hook {hook_name!r}{_suggest(hook_name)}; known hooks: "
                    f"{', '.join(_hookspec.HOOK_NAMES)}",
                    fatal=True,
                )
            return None
        return obj

    def _call_hook(self, info: PluginInfo, hook_name: str) -> None:
        kind = _HOOK_KIND[hook_name]
        impls = [
            impl
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
            if impl.plugin_name == info.name
        ]
        if not impls:
            return
        pending: list[_Info] = []
        rejected: list[str] = []

        def register(*args: Any, **fields: Any) -> None:
            if args:
                names = ("name", "target")
                if len(args) > len(names):
                    raise TypeError(
                        "register() takes name and target positionally, the rest by keyword"
                    )
                for key, value in zip(names, args):
                    fields[key] = value
            try:
                item = make_info(kind, fields)
            except RegistrationError as exc:
                rejected.append(str(exc))
                return
            pending.append(
                dataclasses.replace(
                    item, plugin=info.name, distribution=info.distribution, version=info.version
                )
            )

        for impl in impls:
            kwargs = {"register": register}
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:  # a plugin's hook may raise anything
                info._fail(f"{hook_name} raised {_describe(exc)}", fatal=False)
                return  # registrations of a failing hook call are dropped as a whole
        for message in rejected:
            info._fail(f"{hook_name}: invalid registration: {message}", fatal=False)
        for item in pending:
            self._add(info, item)

    def _add(self, info: PluginInfo, item: _Info) -> None:
        kind = item.kind
        for key in (item.name, *item.aliases):
            owner = self._owner(kind, key)
            if owner is not None:
                info._fail(
                    f"{kind} {key!r} is already registered by plugin {owner!r}; "
                    f"the registration from {info.name!r} is skipped",
                    fatal=False,
                )
                return
        self._items[kind][item.name] = item
        for alias in item.aliases:
            self._aliases[kind][alias] = item.name
        info.registered[kind].append(item.name)

    def _owner(self, kind: str, key: str) -> str | None:
        if key in self._items[kind]:
            return self._items[kind][key].plugin
        if key in self._aliases[kind]:
            return self._items[kind][self._aliases[kind][key]].plugin
        return None

    # -- queries -----------------------------------------------------------------------------

    def items(self, kind: str) -> list[_Info]:
        """Registrations of one kind, sorted by name."""
        return sorted(self._items[kind].values(), key=lambda i: i.name)

    def get(self, kind: str, name: str) -> _Info:
        """The registration called ``name`` (or with that alias); :class:`UnknownNameError` if none."""
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
        key = name.strip().lower().replace("_", "-")
        key = self._aliases[kind].get(key, key)
        try:
            return self._items[kind][key]
        except KeyError:
            pass
        known = sorted(set(self._items[kind]) | set(self._aliases[kind]))
        raise UnknownNameError(kind, name, known, self._why_missing(kind, name))

    def _why_missing(self, kind: str, name: str) -> str:
        broken = [
            p.name
            for p in self.plugins.values()
            if p.status not in ("ok",) and name.replace("_", "-") in p.name
        ]
        if broken:
            plugin = self.plugins[broken[0]]
            return f"plugin {plugin.name!r} is {plugin.status}: {'; '.join(plugin.errors)}"
        return ""

    def resolve(self, item: _Info) -> Any:
        """Import the lazy target of ``item``; failures become :class:`PluginLoadError`."""
        key = (item.kind, item.name)
        with self._lock:
            if key in self._resolved:
                return self._resolved[key]
        module_name, _, attr = item.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # noqa: BLE001 - report whatever the plugin raised
            message = f"{item.kind} {item.name!r}: target {item.target!r} failed to import: {_describe(exc)}"
            plugin = self.plugins.get(item.plugin)
            if plugin is not None and message not in plugin.errors:
                plugin._fail(message, fatal=False)
            raise PluginLoadError(
                f"{message} (plugin {item.plugin!r}, distribution {item.distribution or '?'}). "
                f"Other plugins are unaffected; reinstall or upgrade "
                f"{item.distribution or item.plugin}."
            ) from exc
        with self._lock:
            self._resolved[key] = obj
        return obj


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# the process-wide registry

_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Registry.discover()
        return _registry


def set_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (``None`` rediscovers on next use); returns the old one."""
    global _registry
    with _registry_lock:
        old, _registry = _registry, registry
    return old


def reload_plugins() -> Registry:
    """Forget what was discovered and discover again (after installing a plugin, say)."""
    set_registry(None)
    return get_registry()


def _create(kind: str, name: str, kwargs: dict[str, Any]) -> Any:
    info = get_registry().get(kind, name)
    factory = info.load()
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise TypeError(f"{kind} {info.name!r} ({info.target}): {exc}") from exc


def create_loss(name: str, **kwargs: Any) -> Any:
    """Create the loss registered as ``name`` (or an alias) with constructor keywords ``kwargs``."""
    return _create("loss", name, kwargs)


def create_scorer(name: str, **kwargs: Any) -> Any:
    """Create the scorer registered as ``name`` (or an alias) with constructor keywords ``kwargs``."""
    return _create("scorer", name, kwargs)


def get_exporter(name: str) -> Callable[..., Any]:
    """The export function registered as ``name``."""
    return get_registry().get("exporter", name).load()


def get_info(kind: str, name: str) -> _Info:
    """Metadata of the ``kind`` (``loss``, ``scorer``, ``exporter``) registered as ``name``."""
    if kind not in INFO_TYPES:
        raise ValueError(f"kind must be one of {sorted(INFO_TYPES)}, got {kind!r}")
    return get_registry().get(kind, name)


def list_losses() -> list[LossInfo]:
    """Every registered loss, sorted by name."""
    return get_registry().items("loss")  # type: ignore[return-value]


def list_scorers() -> list[ScorerInfo]:
    """Every registered scorer, sorted by name."""
    return get_registry().items("scorer")  # type: ignore[return-value]


def list_exporters() -> list[ExporterInfo]:
    """Every registered exporter, sorted by name."""
    return get_registry().items("exporter")  # type: ignore[return-value]


def list_plugins() -> list[PluginInfo]:
    """Every discovered plugin (built-in first), with status and errors."""
    plugins = list(get_registry().plugins.values())
    return sorted(plugins, key=lambda p: (p.name != BUILTIN_PLUGIN, p.name))


__all__ = [
    "ExporterInfo",
    "LossInfo",
    "PluginInfo",
    "Registry",
    "ScorerInfo",
    "create_loss",
    "create_scorer",
    "get_exporter",
    "get_info",
    "get_registry",
    "list_exporters",
    "list_losses",
    "list_plugins",
    "list_scorers",
    "make_info",
    "reload_plugins",
    "set_registry",
]
