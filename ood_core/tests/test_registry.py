"""Registry behaviour in-process: metadata validation, faults, duplicates, names, laziness."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import ood_core
from ood_core import hookimpl, registry
from ood_core.errors import PluginLoadError, UnknownNameError
from ood_core.registry import (
    NameClashError,
    Registry,
    SlowPluginWarning,
    _builtin_candidate,
    _Candidate,
    make_info,
)
from ood_core.testing.fakes import loss_registration

LOSS = loss_registration()


def plugin(api=1, **hooks) -> types.SimpleNamespace:
    """A plugin object with the given hook functions (decorated with hookimpl)."""
    ns = types.SimpleNamespace(OODX_PLUGIN_API=api, __name__="fake_plugin")
    for name, fn in hooks.items():
        setattr(ns, name, hookimpl(fn))
    return ns


def cand(name: str, obj, dist: str = "", load=None) -> _Candidate:
    """An entry-point candidate for ``obj`` from distribution ``dist``."""
    return _Candidate(name=name, load=load or (lambda: obj), distribution=dist, module=name)


def load(*cands: _Candidate, builtin: bool = True) -> Registry:
    """A registry built from the given candidates (after the built-in plugin)."""
    reg = Registry()
    reg._load_all(([_builtin_candidate()] if builtin else []) + list(cands))
    return reg


def registers(kind_hook: str, *items: dict):
    def hook(register):
        for item in items:
            register(**item)

    return plugin(**{kind_hook: hook})


def test_oodx_register_losses_registers_loss_with_metadata():
    reg = Registry.from_plugins({"p": registers("oodx_register_losses", LOSS)})
    info = reg.get("loss", "toy")
    assert (info.plugin, info.scorer, info.inputs, info.uses_ood) == (
        "p",
        "msp",
        ("logits", "target"),
        False,
    )
    assert reg.plugins["p"].registered["loss"] == ["toy"]


def test_oodx_register_scorers_registers_scorer():
    scorer = dict(
        name="s",
        target="a.b:C",
        summary="x",
        reads="embedding",
        needs_fit=True,
        tasks=["classification"],
    )
    reg = Registry.from_plugins({"p": registers("oodx_register_scorers", scorer)})
    info = reg.get("scorer", "s")
    assert info.reads == "embedding" and info.needs_fit and info.tasks == ("classification",)


SCORER = dict(name="s", target="a.b:C", summary="x", reads="logits", needs_fit=False, tasks=())


@pytest.mark.parametrize(
    "reads, stored",
    [
        ("feature_maps", "feature_maps"),
        ("inputs", "inputs"),
        (("logits", "features"), ("logits", "features")),
        (["embedding", "feature_maps", "logits"], ("embedding", "feature_maps", "logits")),
        (("features",), "features"),  # one output is its name
    ],
)
def test_scorer_reads_any_model_output_inputs_or_several(reads, stored):
    scorer = {**SCORER, "reads": reads, "tasks": ("classification",)}
    reg = Registry.from_plugins({"p": registers("oodx_register_scorers", scorer)})
    assert reg.plugins["p"].errors == []
    assert reg.get("scorer", "s").reads == stored
    assert registry.SCORER_READS == (*registry.MODEL_OUTPUTS, "inputs")


@pytest.mark.parametrize(
    "reads",
    ["pixels", "", ("logits", "logits"), ("logits", "inputs"), (), ("logits", 3), 5, None],
)
def test_scorer_reads_outside_the_model_outputs_is_rejected(reads):
    scorer = {**SCORER, "reads": reads, "tasks": ("classification",)}
    reg = Registry.from_plugins({"p": registers("oodx_register_scorers", scorer)})
    assert reg.plugins["p"].status == "partial"
    assert any(
        "scorer 's': reads must be one of" in e and repr(reads) in e
        for e in reg.plugins["p"].errors
    ), reg.plugins["p"].errors
    with pytest.raises(UnknownNameError):
        reg.get("scorer", "s")


def test_registry_reads_values_without_torch():
    code = (
        "import sys; from ood_core import registry; "
        "registry.make_info('scorer', dict(name='s', target='a:b', summary='x', "
        "reads=('logits', 'feature_maps'), needs_fit=False, tasks=('classification',))); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_resolves_through_the_registry_that_holds_the_registration():
    scorer = {**SCORER, "target": "ood_core_no_such_module:Thing", "tasks": ("classification",)}
    mine = Registry.from_plugins({"p": registers("oodx_register_scorers", scorer)})
    other = Registry.from_plugins({})
    old = registry.set_registry(other)  # the process-wide registry does not know plugin 'p'
    try:
        info = mine.get("scorer", "s")
        with pytest.raises(PluginLoadError, match="plugin 'p'"):
            info.load()
        assert any("failed to import" in e for e in mine.plugins["p"].errors)
        ok = mine.get("loss", "cross-entropy")
        assert ok.load() is mine._resolved[("loss", "cross-entropy")]
        assert ("loss", "cross-entropy") not in other._resolved
    finally:
        registry.set_registry(old)


def test_a_copy_of_a_registration_compares_equal_and_pickles():
    import copy
    import pickle

    reg = Registry.from_plugins({})
    info = reg.get("scorer", "msp")
    assert pickle.loads(pickle.dumps(info)) == info == copy.deepcopy(info)
    assert "_registry" not in info.to_dict()


def test_oodx_register_exporters_registers_exporter():
    exporter = dict(name="fmt", target="a.b:export", summary="x", suffix=".fmt")
    reg = Registry.from_plugins({"p": registers("oodx_register_exporters", exporter)})
    assert reg.get("exporter", "fmt").suffix == ".fmt"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "Bad Name"}, "name must be lowercase"),
        ({"target": "no_colon"}, "lazy reference"),
        ({"tasks": ("detection",)}, "tasks must be a non-empty subset"),
        ({"uses_ood": "yes"}, "must be True or False"),
        ({"summary": "  "}, "must not be empty"),
        ({"colour": "red"}, "unknown loss field"),
        ({"inputs": ()}, "inputs must name"),
    ],
)
def test_invalid_metadata_is_rejected_with_reason(change, message):
    reg = Registry.from_plugins(
        {"p": registers("oodx_register_losses", {**LOSS, **change}, {**LOSS, "name": "ok"})}
    )
    assert reg.plugins["p"].status == "partial"
    assert any(message in e for e in reg.plugins["p"].errors), reg.plugins["p"].errors
    assert reg.get("loss", "ok").name == "ok"


def test_missing_field_is_rejected():
    item = {k: v for k, v in LOSS.items() if k != "scorer"}
    reg = Registry.from_plugins({"p": registers("oodx_register_losses", item)})
    assert "missing required field(s) ['scorer']" in reg.plugins["p"].errors[0]


def test_duplicate_within_one_distribution_first_wins():
    reg = load(
        cand("a", registers("oodx_register_losses", LOSS), dist="acme"),
        cand("b", registers("oodx_register_losses", {**LOSS, "aliases": ("other",)}), dist="acme"),
    )
    assert reg.get("loss", "toy").plugin == "a"
    assert "already registered by plugin 'a'" in reg.plugins["b"].errors[0]
    with pytest.raises(UnknownNameError):
        reg.get("loss", "other")  # the rejected registration's alias is not left behind
    assert not reg.clashes["loss"]


def test_name_of_two_plugins_without_distribution_is_a_clash():
    reg = Registry.from_plugins(
        [
            ("a", registers("oodx_register_losses", LOSS)),
            ("b", registers("oodx_register_losses", LOSS)),
        ]
    )
    with pytest.raises(NameClashError, match="plugin 'a' and plugin 'b'"):
        reg.get("loss", "toy")


HIJACK = {**LOSS, "name": "mchad", "target": "evil.loss:Hijack"}
MCHAD = {**LOSS, "name": "mchad", "target": "ood_plugin_mchad.loss:MCHADLoss"}


@pytest.mark.parametrize("hijacker_first", [True, False])
def test_name_clash_between_distributions_resolves_to_neither(hijacker_first):
    plugins = [
        cand("aaa-hijack", registers("oodx_register_losses", HIJACK), dist="evil-oodx"),
        cand("mchad", registers("oodx_register_losses", MCHAD), dist="ood-plugin-mchad"),
    ]
    reg = load(*(plugins if hijacker_first else plugins[::-1]))
    with pytest.raises(NameClashError) as err:
        reg.get("loss", "MCHAD")  # the lookup spelling does not matter
    text = str(err.value)
    assert "evil-oodx (plugin 'aaa-hijack')" in text and "ood-plugin-mchad (plugin 'mchad')" in text
    assert "OODX_DISABLE_PLUGINS=aaa-hijack keeps the one from ood-plugin-mchad" in text
    assert isinstance(err.value, ood_core.OODXError)  # the CLI shows it as one Error: line
    assert "mchad" not in [i.name for i in reg.items("loss")]  # not listed as usable either
    for name in ("aaa-hijack", "mchad"):
        plugin = reg.plugins[name]
        assert plugin.status == "partial" and plugin.registered["loss"] == []
        assert plugin.clashes == [
            {
                "kind": "loss",
                "name": "mchad",
                "claimed_by": [
                    {"plugin": p.name, "distribution": p.distribution}
                    for p in (plugins if hijacker_first else plugins[::-1])
                ],
            }
        ]
        assert any("more than one distribution" in e for e in plugin.errors)
    assert reg.clash_list()[0]["name"] == "mchad"


@pytest.mark.parametrize(
    "disable, target",
    [
        ("aaa-hijack", "ood_plugin_mchad.loss:MCHADLoss"),
        ("evil_oodx", "ood_plugin_mchad.loss:MCHADLoss"),  # distribution, spelt another way
        ("mchad", "evil.loss:Hijack"),
        ("Ood_Plugin.MCHAD", "evil.loss:Hijack"),
    ],
)
def test_disabling_one_side_of_a_clash_lets_the_other_resolve(monkeypatch, disable, target):
    monkeypatch.setenv("OODX_DISABLE_PLUGINS", disable)
    reg = load(
        cand("aaa-hijack", registers("oodx_register_losses", HIJACK), dist="evil-oodx"),
        cand("mchad", registers("oodx_register_losses", MCHAD), dist="ood-plugin-mchad"),
    )
    assert reg.get("loss", "mchad").target == target
    assert not reg.clashes["loss"]


def test_alias_clash_refuses_the_alias_only():
    oe = {**LOSS, "name": "outlier-exposure", "aliases": ("oe", "o-e")}
    squat = {**LOSS, "name": "oe", "target": "evil.loss:Hijack", "aliases": ("evil-oe",)}
    reg = load(
        cand("aaa", registers("oodx_register_losses", squat), dist="evil-oodx"),
        cand("outlier-exposure", registers("oodx_register_losses", oe), dist="ood-plugin-oe"),
    )
    with pytest.raises(NameClashError, match="loss 'oe'"):
        reg.get("loss", "oe")
    info = reg.get("loss", "outlier-exposure")  # its own name is unambiguous
    assert info.aliases == ("o-e",) and reg.get("loss", "o-e") is info
    with pytest.raises(UnknownNameError):
        reg.get("loss", "evil-oe")  # the squatter's registration is refused as a whole
    assert reg.plugins["outlier-exposure"].registered["loss"] == ["outlier-exposure"]


def test_same_entry_point_name_from_two_distributions_loads_both_apart(monkeypatch):
    plugins = [
        cand("mchad", registers("oodx_register_losses", HIJACK), dist="aaa-evil"),
        cand("mchad", registers("oodx_register_losses", MCHAD), dist="ood-plugin-mchad"),
    ]
    reg = load(*plugins)
    assert set(reg.plugins) == {"builtin", "mchad", "mchad@ood-plugin-mchad"}
    with pytest.raises(NameClashError, match="OODX_DISABLE_PLUGINS=mchad keeps the one from ood"):
        reg.get("loss", "mchad")
    monkeypatch.setenv("OODX_DISABLE_PLUGINS", "mchad")  # the first only, not both
    assert load(*plugins).get("loss", "mchad").target == MCHAD["target"]


def test_an_entry_point_called_builtin_gets_no_privileges():
    fake = plugin(oodx_register_losses=lambda register: register(**{**LOSS, "name": "ce"}))
    del fake.OODX_PLUGIN_API
    reg = load(cand("builtin", fake, dist="evil-oodx"))
    impostor = reg.plugins["builtin@evil-oodx"]
    assert impostor.status == "incompatible"  # the API check applies to it
    assert reg.plugins["builtin"].distribution == "ood-core"
    assert reg.get("loss", "ce").plugin == "builtin"


@pytest.mark.parametrize("key", ["cross-entropy", "ce", "msp"])
def test_builtin_names_are_reserved(key):
    kind_hook = "oodx_register_scorers" if key == "msp" else "oodx_register_losses"
    item = (
        dict(
            name=key,
            target="evil.x:Y",
            summary="x",
            reads="logits",
            needs_fit=False,
            tasks=("classification",),
        )
        if key == "msp"
        else {**LOSS, "name": key, "target": "evil.x:Y"}
    )
    reg = load(cand("zzz", registers(kind_hook, item), dist="evil-oodx"))
    kind = "scorer" if key == "msp" else "loss"
    assert reg.get(kind, key).plugin == "builtin"
    assert "built-in names are reserved" in reg.plugins["zzz"].errors[0]


def test_alias_clash_with_builtin_is_reported():
    reg = Registry.from_plugins(
        {"p": registers("oodx_register_losses", {**LOSS, "aliases": ("ce",)})}
    )
    assert "'ce' is already registered by plugin 'builtin'" in reg.plugins["p"].errors[0]


def test_aliases_and_name_normalisation():
    reg = Registry.from_plugins({})
    assert reg.get("loss", "CE").name == "cross-entropy"
    assert reg.get("loss", "cross_entropy").name == "cross-entropy"
    assert reg.get("scorer", "max-softmax").name == "msp"


def test_unknown_name_suggests_close_matches_and_lists_installed():
    reg = Registry.from_plugins({})
    with pytest.raises(UnknownNameError) as err:
        reg.get("scorer", "enrgy")
    text = str(err.value)
    assert "Did you mean 'energy'" in text and "Installed scorers: energy, " in text
    assert "entropy" in text


@pytest.mark.parametrize(
    "kind, typed, suggested",
    [("loss", "CrossEntropyLos", "cross-entropy"), ("scorer", "MaxSoftmx", "msp")],
)
def test_unknown_name_lists_registered_names_only_and_suggests_through_aliases(
    kind, typed, suggested
):
    reg = Registry.from_plugins({})
    with pytest.raises(UnknownNameError) as err:
        reg.get(kind, typed)
    text = str(err.value)
    assert f"Did you mean {suggested!r}" in text, text  # a close alias names its owner first
    installed = text.split("Installed ")[1].split(": ", 1)[1].split(".")[0].split(", ")
    assert installed == sorted(i.name for i in reg.items(kind)), installed
    aliases = {a for i in reg.items(kind) for a in i.aliases}
    assert aliases and not aliases & set(installed)


def test_hook_raising_drops_its_registrations_only():
    def hook(register):
        register(**LOSS)
        raise RuntimeError("kaput")

    reg = Registry.from_plugins(
        {
            "p": plugin(oodx_register_losses=hook),
            "q": registers("oodx_register_losses", {**LOSS, "name": "q-loss"}),
        }
    )
    assert reg.plugins["p"].status == "partial"
    assert "RuntimeError: kaput" in reg.plugins["p"].errors[0]
    with pytest.raises(UnknownNameError):
        reg.get("loss", "toy")
    assert reg.get("loss", "q-loss").plugin == "q"


def test_unknown_hook_and_api_version():
    typo = plugin(oodx_register_lossez=lambda register: None)
    reg = Registry.from_plugins(
        {"typo": typo, "future": plugin(api=2), "missing": types.SimpleNamespace()}
    )
    assert reg.plugins["typo"].status == "error"
    assert "did you mean 'oodx_register_losses'" in reg.plugins["typo"].errors[0]
    assert reg.plugins["future"].status == "incompatible"
    assert "targets oodx plugin API 2" in reg.plugins["future"].errors[0]
    assert "OODX_PLUGIN_API = 1" in reg.plugins["missing"].errors[0]


def test_hook_with_wrong_arguments_is_rejected():
    reg = Registry.from_plugins({"p": plugin(oodx_register_losses=lambda register, extra: None)})
    assert reg.plugins["p"].status == "error"
    assert "invalid hook implementation" in reg.plugins["p"].errors[0]


def test_import_error_in_plugin_module():
    def failing():
        raise ImportError("no module named nothing")

    reg = Registry()
    reg._load_all(
        [_Candidate(name="x", load=failing, distribution="ood-plugin-x", module="x.plugin")]
    )
    assert reg.plugins["x"].status == "error"
    assert "failed to import x.plugin: ImportError" in reg.plugins["x"].errors[0]


def test_target_failing_on_first_use_is_reported_on_the_plugin():
    reg = Registry.from_plugins(
        {"p": registers("oodx_register_losses", {**LOSS, "target": "nowhere.at_all:Thing"})}
    )
    with pytest.raises(PluginLoadError, match=r"target 'nowhere.at_all:Thing' failed to import"):
        reg.resolve(reg.get("loss", "toy"))
    assert reg.plugins["p"].status == "partial"


def test_env_allow_and_deny(monkeypatch):
    plugins = {
        "a": registers("oodx_register_losses", LOSS),
        "b": registers("oodx_register_losses", {**LOSS, "name": "b"}),
    }
    monkeypatch.setenv("OODX_DISABLE_PLUGINS", "a")
    reg = Registry.from_plugins(plugins)
    assert reg.plugins["a"].status == "disabled" and reg.get("loss", "b")
    monkeypatch.delenv("OODX_DISABLE_PLUGINS")
    monkeypatch.setenv("OODX_PLUGINS", "")
    reg = Registry.from_plugins(plugins)
    assert [i.name for i in reg.items("loss")] == ["cross-entropy"]
    monkeypatch.setenv("OODX_PLUGINS", "b")
    reg = Registry.from_plugins(plugins)
    assert [i.name for i in reg.items("loss")] == ["b", "cross-entropy"]


def test_make_info_positional_register():
    got = []

    def hook(register):
        register(
            "toy",
            "ood_core.builtin.losses:CrossEntropyLoss",
            **{k: v for k, v in LOSS.items() if k not in ("name", "target")},
        )
        got.append(True)

    reg = Registry.from_plugins({"p": plugin(oodx_register_losses=hook)})
    assert got and reg.get("loss", "toy").target.endswith("CrossEntropyLoss")
    assert make_info("loss", LOSS).kind == "loss"


def test_public_api_creates_builtins():
    loss = ood_core.create_loss("cross-entropy", reduction="sum")
    assert type(loss).__name__ == "CrossEntropyLoss" and loss.reduction == "sum"
    assert type(ood_core.create_scorer("energy", temperature=2.0)).__name__ == "EnergyScore"
    with pytest.raises(TypeError, match="loss 'cross-entropy'"):
        ood_core.create_loss("cross-entropy", nonsense=1)
    names = [p.name for p in ood_core.list_plugins()]
    assert names[0] == "builtin"


@pytest.mark.parametrize(
    "code",
    [
        "import ood_core",
        "import ood_core; ood_core.list_losses(); ood_core.list_scorers(); ood_core.list_exporters(); ood_core.list_plugins()",
        "import ood_core.hookspecs, ood_core.registry, ood_core.errors, ood_core.lazy, ood_core.testing.pytest_plugin",
    ],
)
def test_import_and_listing_do_not_import_torch(code):
    check = f"{code}; import sys; sys.exit(3 if 'torch' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or "torch was imported"


# --------------------------------------------------------------------------------------------
# names are matched whole and ASCII only

BAD_NAMES = [
    "mchad\n",
    "mchad ",
    " mchad",
    "mchad\t",
    "m\u0441had",  # Cyrillic es
    "\uff4dchad",  # fullwidth m
    "mchad\u200b",  # zero-width space
    "\u212aelvin",  # Kelvin sign, which lower() turns into an ASCII k
    "mc_had",  # lookups turn '_' into '-', so it could never be found
    "a" * 65,
    "",
]


@pytest.mark.parametrize(
    "bad, where",
    [(b, w) for b in BAD_NAMES for w in ("name", "alias", "scorer") if b or w != "scorer"],
)
def test_names_aliases_and_scorer_refs_are_matched_whole(bad, where):
    change = {"name": {"name": bad}, "alias": {"aliases": (bad,)}, "scorer": {"scorer": bad}}
    reg = Registry.from_plugins({"p": registers("oodx_register_losses", {**LOSS, **change[where]})})
    assert reg.plugins["p"].status == "partial" and reg.plugins["p"].registered["loss"] == []
    assert "invalid registration" in reg.plugins["p"].errors[0]


@pytest.mark.parametrize("target", ["a.b:C\n", "a.b:C ", "a b:C", "a.b:C:D", ":C", "a.b:"])
def test_targets_are_matched_whole(target):
    reg = Registry.from_plugins(
        {"p": registers("oodx_register_losses", {**LOSS, "target": target})}
    )
    assert "lazy reference" in reg.plugins["p"].errors[0]


# --------------------------------------------------------------------------------------------
# plugin code may raise anything but KeyboardInterrupt


class Custom(BaseException):
    pass


class Unprintable(Exception):
    def __str__(self):
        raise SystemExit("from __str__")


RAISED = [SystemExit(3), GeneratorExit(), Custom("custom"), Unprintable(), StopIteration()]


def _raiser(exc):
    def fn(*args, **kwargs):
        raise exc

    return fn


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_anything_raised_at_import_is_that_plugins_error(exc):
    good = cand("good", registers("oodx_register_losses", LOSS))
    reg = load(cand("bad", None, dist="bad-oodx", load=_raiser(exc)), good)
    assert reg.plugins["bad"].status == "error"
    assert f"failed to import bad: {type(exc).__name__}" in reg.plugins["bad"].errors[0]
    assert reg.get("loss", "toy").plugin == "good"


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_anything_raised_in_a_hook_is_that_plugins_error(exc):
    reg = Registry.from_plugins(
        {
            "bad": plugin(oodx_register_losses=_raiser(exc)),
            "good": registers("oodx_register_losses", LOSS),
        }
    )
    assert f"oodx_register_losses raised {type(exc).__name__}" in reg.plugins["bad"].errors[0]
    assert reg.get("loss", "toy").plugin == "good"


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_anything_raised_by_a_target_becomes_plugin_load_error(exc, monkeypatch):
    module = types.ModuleType("explodes_on_import")
    monkeypatch.setitem(sys.modules, "explodes_on_import", module)
    module.__getattr__ = _raiser(exc)
    reg = Registry.from_plugins(
        {"p": registers("oodx_register_losses", {**LOSS, "target": "explodes_on_import:Loss"})}
    )
    with pytest.raises(PluginLoadError, match=type(exc).__name__):
        reg.resolve(reg.get("loss", "toy"))


def test_plugin_whose_attributes_raise_is_that_plugins_error():
    class Hostile:
        def __getattr__(self, name):
            raise SystemExit(f"no {name}")

    reg = load(cand("hostile", Hostile()), cand("good", registers("oodx_register_losses", LOSS)))
    assert reg.plugins["hostile"].status == "error"
    assert "SystemExit" in reg.plugins["hostile"].errors[0]
    assert reg.get("loss", "toy")


@pytest.mark.parametrize("at", ["import", "hook"])
def test_keyboard_interrupt_is_not_swallowed(at):
    if at == "import":
        candidates = [cand("p", None, load=_raiser(KeyboardInterrupt()))]
    else:
        candidates = [cand("p", plugin(oodx_register_losses=_raiser(KeyboardInterrupt())))]
    with pytest.raises(KeyboardInterrupt):
        load(*candidates)


def test_register_kept_past_its_hook_is_refused():
    kept = []

    def hook(register):
        kept.append(register)

    reg = Registry.from_plugins({"p": plugin(oodx_register_losses=hook)})
    with pytest.raises(RuntimeError, match="after the hook returned"):
        kept[0](**{**LOSS, "name": "late"})
    with pytest.raises(UnknownNameError):
        reg.get("loss", "late")


# --------------------------------------------------------------------------------------------
# import time: measured per plugin with a fake clock, warned about above the budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleeping(self, seconds: float, then=None):
        def fn(*args, **kwargs):
            self.now += seconds
            return then

        return fn


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(registry, "_clock", fake)
    monkeypatch.delenv("OODX_PLUGIN_IMPORT_BUDGET", raising=False)
    return fake


def test_import_and_hook_time_are_measured_per_plugin(clock, recwarn):
    slow_hook = plugin(oodx_register_losses=clock.sleeping(0.25))
    reg = load(
        cand(
            "slow-import", None, load=clock.sleeping(0.2, registers("oodx_register_losses", LOSS))
        ),
        cand("slow-hook", slow_hook),
    )
    assert reg.plugins["slow-import"].import_seconds == pytest.approx(0.2)
    assert reg.plugins["slow-hook"].import_seconds == 0.0
    assert reg.plugins["slow-hook"].hook_seconds == pytest.approx(0.25)
    assert reg.plugins["builtin"].import_seconds == 0.0
    assert not [w for w in recwarn if issubclass(w.category, SlowPluginWarning)]


def test_slow_plugin_is_warned_about_in_one_line(clock):
    sleepy = cand("sleepy", None, dist="sleepy-oodx", load=clock.sleeping(2.0, plugin()))
    with pytest.warns(SlowPluginWarning) as caught:
        reg = load(sleepy, cand("quick", plugin()))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "plugin 'sleepy' (sleepy-oodx) took 2.00 s to load" in message and "0.5 s" in message
    assert "OODX_DISABLE_PLUGINS=sleepy" in message and "\n" not in message
    assert reg.plugins["sleepy"].warnings == [message]
    assert reg.plugins["sleepy"].status == "ok"  # slow is not broken
    assert reg.plugins["quick"].warnings == []


def test_builtin_time_is_reported_not_warned_about(clock, monkeypatch, recwarn):
    monkeypatch.setenv("OODX_PLUGIN_IMPORT_BUDGET", "0")
    builtin = _builtin_candidate()
    builtin.load = clock.sleeping(1.0, importlib.import_module("ood_core.builtin.plugin"))
    reg = Registry()
    reg._load_all([builtin, cand("p", None, load=clock.sleeping(1.0, plugin()))])
    assert reg.plugins["builtin"].import_seconds == 1.0 and not reg.plugins["builtin"].warnings
    assert [str(w.message).split(" took")[0] for w in recwarn] == ["plugin 'p' (p)"]


@pytest.mark.parametrize(
    "budget, warned", [("5", False), ("1.5", True), ("0", True), ("inf", False), (" 3 ", False)]
)
def test_import_budget_from_the_environment(clock, monkeypatch, recwarn, budget, warned):
    monkeypatch.setenv("OODX_PLUGIN_IMPORT_BUDGET", budget)
    reg = load(cand("sleepy", None, load=clock.sleeping(2.0, plugin())))
    assert bool(reg.plugins["sleepy"].warnings) is warned
    assert all(issubclass(w.category, SlowPluginWarning) for w in recwarn)


@pytest.mark.parametrize("budget", ["soon", "nan", "-1", "0.5s"])
def test_bad_import_budget_warns_and_falls_back(clock, monkeypatch, budget):
    monkeypatch.setenv("OODX_PLUGIN_IMPORT_BUDGET", budget)
    with pytest.warns(SlowPluginWarning) as caught:
        reg = load(cand("sleepy", None, load=clock.sleeping(0.6, plugin())))
    texts = [str(w.message) for w in caught]
    assert any(
        "OODX_PLUGIN_IMPORT_BUDGET must be a number" in t and repr(budget) in t for t in texts
    )
    assert reg.plugins["sleepy"].warnings  # 0.6 s is over the 0.5 s default


def test_public_api_refuses_a_clashing_name():
    old = registry.set_registry(
        load(
            cand("a", registers("oodx_register_losses", LOSS), dist="dist-a"),
            cand("b", registers("oodx_register_losses", LOSS), dist="dist-b"),
        )
    )
    try:
        with pytest.raises(ood_core.NameClashError, match="dist-a .* and dist-b"):
            ood_core.create_loss("toy")
        with pytest.raises(ood_core.NameClashError):
            ood_core.get_info("loss", "toy")
    finally:
        registry.set_registry(old)
