"""Plugin discovery and the registry of losses, scorers and exporters.

Discovery reads the ``oodx`` entry-point group, imports each plugin's light entry-point module
(which imports only :mod:`ood_core.hookspec`), checks the plugin API version it declares and calls
its hooks with a ``register`` callback. Registrations hold metadata and a lazy ``"module:attr"``
target, so nothing here imports torch or a method's code. Every fault is confined to the plugin
that caused it: it is recorded on that plugin's :class:`PluginInfo` and the plugin (or just the
faulty registration) is skipped.

Names belong to no plugin in particular: a name (or alias) that two distributions register is a
*clash*; it is refused (:class:`NameClashError`) until all but one of them are disabled, so that
no plugin can take over another's name by sorting first. Built-in names are reserved. Plugin code
(import, hooks, targets) may raise anything but ``KeyboardInterrupt`` and only that plugin fails;
a plugin slower to load than ``OODX_PLUGIN_IMPORT_BUDGET`` seconds is reported with a warning.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import pluggy

from ood_core import hookspecs as _hookspec
from ood_core.errors import OODXError, PluginLoadError, RegistrationError, UnknownNameError

BUILTIN_PLUGIN = "builtin"
TASKS = ("classification", "segmentation")
#: named outputs a model may return (a dict of them, or one tensor)
MODEL_OUTPUTS = ("logits", "embedding", "features", "feature_maps")
#: what a scorer may read: one of these, or a tuple of several model outputs
SCORER_READS = (*MODEL_OUTPUTS, "inputs")
#: names and aliases: ASCII lowercase words joined by '-', matched whole (``fullmatch``: no
#: trailing newline, space or look-alike character gets through)
_NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
MAX_NAME_LENGTH = 64
_TARGET_RE = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*:[A-Za-z_]\w*(?:\.\w+)*")
#: seconds a plugin may take to load (import plus hooks) before a warning; env overrides
DEFAULT_IMPORT_BUDGET = 0.5
_BUDGET_ENV = "OODX_PLUGIN_IMPORT_BUDGET"
_clock: Callable[[], float] = time.perf_counter  # tests replace it with a fake clock


def is_valid_name(name: object) -> bool:
    """Whether ``name`` may be registered: lowercase ASCII words joined by '-', at most 64 chars."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(_NAME_RE.fullmatch(name))


class NameClashError(OODXError, LookupError):
    """A name is registered by more than one distribution, so it resolves to none of them."""

    def __init__(self, kind: str, name: str, claims: tuple[_Info, ...]) -> None:
        self.kind, self.name, self.claims = kind, name, claims
        who = " and ".join(
            f"{c.distribution} (plugin {c.plugin!r})" if c.distribution else f"plugin {c.plugin!r}"
            for c in claims
        )
        picks = "; ".join(
            f"OODX_DISABLE_PLUGINS={','.join(o.plugin for o in claims if o is not c)} keeps "
            f"the one from {_where(c)}"
            for c in claims
        )
        super().__init__(
            f"{kind} {name!r} is registered by more than one distribution: {who}. oodx does not "
            f"pick one for you. Disable the others: {picks} (or uninstall one; `oodx plugins` "
            "lists the clash)."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class SlowPluginWarning(UserWarning):
    """A plugin took longer to load than the import budget (``OODX_PLUGIN_IMPORT_BUDGET``)."""


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
        """Import and return the registered object (the lazy target), through the registry that
        holds this registration (the process-wide one if that registry is gone)."""
        owner = getattr(self, "_registry", None)
        registry = owner() if owner is not None else None
        return (registry if registry is not None else get_registry()).resolve(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["kind"] = self.kind
        return out

    def __getstate__(self) -> dict[str, Any]:
        # the owning registry is process-local: a copy resolves through the process-wide one
        return {k: v for k, v in self.__dict__.items() if k != "_registry"}


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
    #: settings that suit a small model (a 16-d embedding, a few hundred steps): constructor
    #: keywords by name, plus under the key ``"demo"`` a mapping of training settings for
    #: ``oodx demo`` (see :data:`RECIPE_DEMO_KEYS`); JSON values only
    recipe: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ScorerInfo(_Info):
    """A registered scorer. ``reads`` is the model output it maps to outlier scores, from
    :data:`SCORER_READS` (``inputs``: the model's input, for gradient methods), or a tuple of
    several :data:`MODEL_OUTPUTS`."""

    kind: ClassVar[str] = "scorer"
    reads: str | tuple[str, ...] = "logits"
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


def _check_reads(name: str, reads: Any) -> str | tuple[str, ...]:
    """A scorer's ``reads``: one of :data:`SCORER_READS`, or several distinct
    :data:`MODEL_OUTPUTS` (a tuple or list; a one-element one becomes its name)."""
    if isinstance(reads, str) and reads in SCORER_READS:
        return reads
    several = isinstance(reads, (tuple, list)) and len(reads) > 0
    if several and all(r in MODEL_OUTPUTS for r in reads) and len(set(reads)) == len(reads):
        return reads[0] if len(reads) == 1 else tuple(reads)
    raise RegistrationError(
        f"scorer {name!r}: reads must be one of {SCORER_READS} or a tuple of distinct model "
        f"outputs from {MODEL_OUTPUTS}, got {reads!r}"
    )


#: training settings a recipe may give ``oodx demo`` under its ``"demo"`` key
RECIPE_DEMO_KEYS = {
    "warmup_steps": "steps of plain cross-entropy on the ID data before the loss takes over",
    "warmup_ce_keyword": "constructor keyword that gets the ID cross-entropy after the warm-up",
    "epoch_steps": "steps between calls of the loss's per-epoch method (``epoch_method``)",
    "epoch_method": "method called as ``method(model_logits, id_batches)`` every epoch_steps",
    "extra_logits": "logit columns after the class logits (1: a background class)",
    "head": "attribute of the loss that is the model's classifier head (a Linear)",
    "embedding_dim": "width of the model's embedding (default 16; 'classes': the class count)",
    "embedding_norm": "'batch': the embedding passes a BatchNorm1d without affine parameters",
    "fit_centers": "after training, refit the loss's class means on the training embeddings",
    "lr": "the Adam learning rate",
}


def _json_value(value: Any, where: str) -> Any:
    """A JSON copy of ``value`` (tuples become lists), or :class:`RegistrationError`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, f"{where}.{k}") for k, v in value.items()}
    raise RegistrationError(
        f"{where} must be a JSON value (None, bool, int, finite float, str, list, or a mapping "
        f"with str keys), got {type(value).__name__}: {value!r}"
    )


def _check_recipe(name: str, recipe: Any) -> dict[str, Any]:
    """A loss's ``recipe``: a mapping of constructor keywords (identifiers) to JSON values,
    with an optional ``"demo"`` mapping of :data:`RECIPE_DEMO_KEYS`."""
    where = f"loss {name!r}: recipe"
    if not isinstance(recipe, Mapping):
        raise RegistrationError(f"{where} must be a mapping, got {type(recipe).__name__}")
    bad = [k for k in recipe if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        raise RegistrationError(f"{where} keys must be keyword names, got {bad!r}")
    out = _json_value(recipe, where)
    demo = out.get("demo", {})
    if not isinstance(demo, dict):
        raise RegistrationError(f"{where}['demo'] must be a mapping, got {demo!r}")
    unknown = sorted(set(demo) - set(RECIPE_DEMO_KEYS))
    if unknown:
        raise RegistrationError(
            f"{where}['demo'] has unknown key(s) {unknown}; expected some of "
            f"{sorted(RECIPE_DEMO_KEYS)}"
        )
    return out


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
    if not is_valid_name(name):
        raise RegistrationError(
            f"{kind} name must be lowercase ASCII letters, digits and '-' (like "
            f"'outlier-exposure', at most {MAX_NAME_LENGTH} characters), got {name!r}"
        )
    target = values["target"]
    if not isinstance(target, str) or not _TARGET_RE.fullmatch(target):
        raise RegistrationError(
            f"{kind} {name!r}: target must be a lazy reference 'package.module:Attribute', "
            f"got {target!r}"
        )
    for key in ("summary", "paper", "scorer", "suffix"):
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
        if not is_valid_name(alias):
            raise RegistrationError(f"{kind} {name!r}: alias {alias!r} is not a valid name")
    if "tasks" in values:
        bad = [t for t in values["tasks"] if t not in TASKS]
        if bad or not values["tasks"]:
            raise RegistrationError(
                f"{kind} {name!r}: tasks must be a non-empty subset of {TASKS}, got "
                f"{values['tasks']!r}"
            )
    if kind == "scorer":
        values["reads"] = _check_reads(name, values["reads"])
    if kind == "loss":
        if not values["inputs"]:
            raise RegistrationError(f"loss {name!r}: inputs must name forward's arguments")
        if values["scorer"] and not is_valid_name(values["scorer"]):
            raise RegistrationError(f"loss {name!r}: scorer {values['scorer']!r} is not a name")
        values["recipe"] = _check_recipe(name, values.get("recipe", {}))
    return cls(**values)


# --------------------------------------------------------------------------------------------
# plugins


@dataclass
class PluginInfo:
    """One plugin as discovered: where it came from, its status and what it registered.

    ``status`` is ``ok``, ``partial`` (loaded, some registrations rejected or clashing), ``error``
    (nothing registered), ``incompatible`` (targets another plugin API), ``disabled`` (by
    ``OODX_DISABLE_PLUGINS``/``OODX_PLUGINS``). ``name`` is unique: a second distribution using
    an entry-point name already taken is listed as ``name@distribution``. ``import_seconds`` and
    ``hook_seconds`` are how long importing its entry-point module and calling its hooks took
    (``None`` when not loaded); ``clashes`` lists its names that another distribution registers too.
    """

    name: str
    distribution: str = ""
    version: str = ""
    module: str = ""
    api: int | None = None
    status: str = "ok"
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(
        default_factory=lambda: {"loss": [], "scorer": [], "exporter": []}
    )
    clashes: list[dict[str, Any]] = field(default_factory=list)
    import_seconds: float | None = None
    hook_seconds: float = 0.0

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
    builtin: bool = False


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _norm_dist(name: str) -> str:
    """Distribution name normalised as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _selected(info: PluginInfo, names: set[str]) -> bool:
    """Whether an ``OODX_(DISABLE_)PLUGINS`` list names this plugin (its key or distribution)."""
    dists = {_norm_dist(n) for n in names}
    return info.name in names or bool(info.distribution and _norm_dist(info.distribution) in dists)


def _where(item: _Info) -> str:
    return item.distribution or item.plugin


def _claimants(claims: Iterable[_Info]) -> list[dict[str, str]]:
    return [{"plugin": c.plugin, "distribution": c.distribution} for c in claims]


def _import_budget() -> float:
    """Seconds from ``OODX_PLUGIN_IMPORT_BUDGET`` (a non-negative number; ``inf`` never warns)."""
    raw = os.environ.get(_BUDGET_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_IMPORT_BUDGET
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # NaN and negative values too
        _warn(
            f"{_BUDGET_ENV} must be a number of seconds >= 0 (or 'inf'), got {raw!r}; "
            f"using {DEFAULT_IMPORT_BUDGET}"
        )
        return DEFAULT_IMPORT_BUDGET
    return value


def _warn(message: str) -> None:
    # an explicit '<oodx>' location: the warning prints as one line with no source line under it
    warnings.warn_explicit(message, SlowPluginWarning, filename="<oodx>", lineno=0)


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
        builtin=True,
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
        #: kind -> name or alias -> the registrations (one per distribution) that claim it
        self._claims: dict[str, dict[str, list[_Info]]] = {k: {} for k in INFO_TYPES}
        self._accepted: list[_Info] = []
        #: kind -> name -> the registrations of different distributions that all claim it
        self.clashes: dict[str, dict[str, tuple[_Info, ...]]] = {k: {} for k in INFO_TYPES}
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
        entry-point plugins go through. Without a distribution, each plugin counts as its own.
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
        loaded: list[PluginInfo] = []
        for cand in candidates:
            info = self._admit(cand)
            if info.status == "disabled":
                continue
            start = _clock()
            obj = self._import_plugin(info, cand)
            info.import_seconds = _clock() - start
            if obj is not None:
                loaded.append(info)
        for hook_name in _hookspec.HOOK_NAMES:
            for info in loaded:
                if info.status in ("ok", "partial"):
                    start = _clock()
                    self._call_hook(info, hook_name)
                    info.hook_seconds += _clock() - start
        self._settle()
        self._check_budget()

    def _admit(self, cand: _Candidate) -> PluginInfo:
        """The plugin's record under a unique name, ``disabled`` if the environment says so."""
        key = cand.name
        if key in self.plugins or (key == BUILTIN_PLUGIN and not cand.builtin):
            key = f"{cand.name}@{cand.distribution or cand.module}"
        info = PluginInfo(
            name=key, distribution=cand.distribution, version=cand.version, module=cand.module
        )
        self.plugins[key] = info
        if cand.builtin:
            return info
        allow = _env_names("OODX_PLUGINS")
        if _selected(info, _env_names("OODX_DISABLE_PLUGINS") or set()):
            info.status = "disabled"
            info.errors.append("disabled by OODX_DISABLE_PLUGINS")
        elif allow is not None and not _selected(info, allow):
            info.status = "disabled"
            info.errors.append("not listed in OODX_PLUGINS")
        return info

    def _import_plugin(self, info: PluginInfo, cand: _Candidate) -> Any | None:
        try:
            obj = cand.load()
            api = None if cand.builtin else getattr(obj, "OODX_PLUGIN_API", None)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit, anything
            info._fail(f"failed to import {cand.module or cand.name}: {_describe(exc)}", fatal=True)
            return None
        if not info.module:
            info.module = getattr(obj, "__name__", type(obj).__name__)
        if cand.builtin:
            info.api = _hookspec.PLUGIN_API_VERSION
        elif not self._api_compatible(info, api):
            return None
        try:
            self.pm.register(obj, name=info.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - pluggy validation, or the object's getattr
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

    def _api_compatible(self, info: PluginInfo, api: Any) -> bool:
        info.api = api if isinstance(api, int) else None
        if api is None:
            info.status = "incompatible"
            info.errors.append(
                f"{info.module} does not declare the plugin API it targets; add "
                f"'OODX_PLUGIN_API = {_hookspec.PLUGIN_API_VERSION}' to it"
            )
            return False
        if api == _hookspec.PLUGIN_API_VERSION:
            return True
        info.status = "incompatible"
        from ood_core import __version__

        if isinstance(api, int) and api > _hookspec.PLUGIN_API_VERSION:
            advice = f"upgrade ood-core (pip install -U ood-core; {__version__} is installed)"
        else:
            advice = f"upgrade {info.distribution or info.name} to a release for API "
            advice += f"{_hookspec.PLUGIN_API_VERSION}"
        info.errors.append(
            f"targets oodx plugin API {api!r} but ood-core {__version__} provides API "
            f"{_hookspec.PLUGIN_API_VERSION}: {advice}"
        )
        return False

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
        open_ = [True]

        def register(*args: Any, **fields: Any) -> None:
            if not open_[0]:
                raise RuntimeError(f"register() of {hook_name} called after the hook returned")
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

        try:
            for impl in impls:
                impl.function(*[{"register": register}[arg] for arg in impl.argnames])
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin's hook may raise anything
            info._fail(f"{hook_name} raised {_describe(exc)}", fatal=False)
            return  # registrations of a failing hook call are dropped as a whole
        finally:
            open_[0] = False
        for message in rejected:
            info._fail(f"{hook_name}: invalid registration: {message}", fatal=False)
        for item in pending:
            self._claim(info, item)

    def _claim(self, info: PluginInfo, item: _Info) -> None:
        """Record that ``item`` claims its name and aliases; a duplicate within one distribution,
        or of a built-in name, is rejected here, a clash between distributions later."""
        kind = item.kind
        keys = tuple(dict.fromkeys((item.name, *item.aliases)))
        for key in keys:
            for other in self._claims[kind].get(key, ()):
                if other.plugin == BUILTIN_PLUGIN or self._dist_key(other) == self._dist_key(item):
                    reserved = (
                        " (built-in names are reserved)" if other.plugin == BUILTIN_PLUGIN else ""
                    )
                    info._fail(
                        f"{kind} {key!r} is already registered by plugin {other.plugin!r}"
                        f"{reserved}; the registration from {info.name!r} is skipped",
                        fatal=False,
                    )
                    return
        for key in keys:
            self._claims[kind].setdefault(key, []).append(item)
        self._accepted.append(item)

    def _dist_key(self, item: _Info) -> str:
        return _norm_dist(item.distribution) if item.distribution else f"plugin {item.plugin}"

    def _settle(self) -> None:
        """Register every claimed name that exactly one distribution claims; report the rest."""
        for kind, claims in self._claims.items():
            self.clashes[kind] = {k: tuple(v) for k, v in claims.items() if len(v) > 1}
        for item in self._accepted:
            clashed = self.clashes[item.kind]
            if item.name in clashed:
                continue
            aliases = tuple(a for a in dict.fromkeys(item.aliases) if a not in clashed)
            if aliases != item.aliases:
                item = dataclasses.replace(item, aliases=aliases)
            object.__setattr__(item, "_registry", weakref.ref(self))  # load() resolves here
            self._items[item.kind][item.name] = item
            for alias in aliases:
                self._aliases[item.kind][alias] = item.name
            self.plugins[item.plugin].registered[item.kind].append(item.name)
        for kind, clashed in self.clashes.items():
            for key, claims in clashed.items():
                error = str(NameClashError(kind, key, claims))
                for item in claims:
                    plugin = self.plugins[item.plugin]
                    plugin._fail(error, fatal=False)
                    plugin.clashes.append(
                        {"kind": kind, "name": key, "claimed_by": _claimants(claims)}
                    )

    def _check_budget(self) -> None:
        budget = None
        for info in self.plugins.values():
            if info.import_seconds is None or info.name == BUILTIN_PLUGIN:
                continue  # the core's own time is reported, not warned about: it cannot be disabled
            total = info.import_seconds + info.hook_seconds
            budget = _import_budget() if budget is None else budget
            if total > budget:
                message = (
                    f"plugin {info.name!r} ({info.distribution or info.module}) took "
                    f"{total:.2f} s to load (import {info.import_seconds:.2f} s, hooks "
                    f"{info.hook_seconds:.2f} s), over the {budget:g} s budget; every oodx "
                    f"command waits for it (disable it with OODX_DISABLE_PLUGINS={info.name}, "
                    f"or raise {_BUDGET_ENV})"
                )
                info.warnings.append(message)
                _warn(message)

    # -- queries -----------------------------------------------------------------------------

    def items(self, kind: str) -> list[_Info]:
        """Registrations of one kind, sorted by name."""
        return sorted(self._items[kind].values(), key=lambda i: i.name)

    def clash_list(self) -> list[dict[str, Any]]:
        """Every clash: kind, name and the plugins/distributions that claim it."""
        return [
            {
                "kind": kind,
                "name": key,
                "claimed_by": [
                    {"plugin": c.plugin, "distribution": c.distribution} for c in claims
                ],
            }
            for kind, clashed in self.clashes.items()
            for key, claims in sorted(clashed.items())
        ]

    def get(self, kind: str, name: str) -> _Info:
        """The registration called ``name`` (or with that alias).

        :class:`NameClashError` if several distributions register it, :class:`UnknownNameError`
        if none does.
        """
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
        key = name.strip().lower().replace("_", "-")
        if key in self.clashes[kind]:
            raise NameClashError(kind, key, self.clashes[kind][key])
        key = self._aliases[kind].get(key, key)
        try:
            return self._items[kind][key]
        except KeyError:
            pass
        raise UnknownNameError(
            kind,
            name,
            sorted(self._items[kind]),
            self._why_missing(kind, name),
            suggestions=self._close_names(kind, key),
        )

    def _close_names(self, kind: str, key: str) -> list[str]:
        """Registered names close to ``key``, matched against names and aliases (pytorch-ood
        class names): a close alias suggests the name it stands for."""
        keys = [*self._items[kind], *self._aliases[kind]]
        close = difflib.get_close_matches(key, keys, n=6, cutoff=0.5)
        return list(dict.fromkeys(self._aliases[kind].get(c, c) for c in close))[:3]

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
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - report whatever the plugin raised
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
    """``Type: message`` of what a plugin raised, even if its ``__str__`` raises too."""
    try:
        text = str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001
        text = "<exception whose str() fails>"
    return f"{type(exc).__name__}: {text}"


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
    "NameClashError",
    "PluginInfo",
    "Registry",
    "MODEL_OUTPUTS",
    "SCORER_READS",
    "ScorerInfo",
    "SlowPluginWarning",
    "create_loss",
    "create_scorer",
    "get_exporter",
    "get_info",
    "get_registry",
    "is_valid_name",
    "list_exporters",
    "list_losses",
    "list_plugins",
    "list_scorers",
    "make_info",
    "reload_plugins",
    "set_registry",
]
