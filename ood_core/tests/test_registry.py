"""Registry behaviour in-process: metadata validation, faults, duplicates, names, laziness."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import ood_core
from ood_core import hookimpl
from ood_core.errors import PluginLoadError, UnknownNameError
from ood_core.registry import Registry, make_info

LOSS = dict(
    name="toy",
    target="ood_core.builtin.losses:CrossEntropyLoss",
    summary="A toy.",
    paper="",
    tasks=("classification",),
    uses_ood=False,
    scorer="msp",
    inputs=("logits", "target"),
)


def plugin(api=1, **hooks) -> types.SimpleNamespace:
    """A plugin object with the given hook functions (decorated with hookimpl)."""
    ns = types.SimpleNamespace(OODX_PLUGIN_API=api, __name__="fake_plugin")
    for name, fn in hooks.items():
        setattr(ns, name, hookimpl(fn))
    return ns


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


def test_duplicates_first_wins_and_clash_is_reported():
    reg = Registry.from_plugins(
        [
            ("a", registers("oodx_register_losses", LOSS)),
            ("b", registers("oodx_register_losses", {**LOSS, "aliases": ("other",)})),
        ]
    )
    assert reg.get("loss", "toy").plugin == "a"
    assert "already registered by plugin 'a'" in reg.plugins["b"].errors[0]
    with pytest.raises(UnknownNameError):
        reg.get("loss", "other")  # the rejected registration's alias is not left behind


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
    assert "Did you mean 'energy'" in text and "Installed scorers: energy, entropy" in text


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

    from ood_core.registry import _Candidate

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
