"""Discovery from installed wheels: a third-party plugin works beside a plugin with every fault.

Builds the ood-core wheel and two throw-away plugin wheels in a temporary directory, installs them
into a fresh virtual environment and drives discovery there in subprocesses.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GOOD_PLUGIN = """
from ood_core import hookimpl

OODX_PLUGIN_API = 1


@hookimpl
def oodx_register_losses(register):
    register(name="acme-loss", target="acme_oodx.loss:AcmeLoss", summary="Toy loss.",
             paper="", tasks=("classification",), uses_ood=False, scorer="msp",
             inputs=("logits", "target"))


@hookimpl
def oodx_register_scorers(register):
    register(name="acme-score", target="acme_oodx.loss:AcmeScore", summary="Toy scorer.",
             reads="logits", needs_fit=False, tasks=("classification",))
"""

GOOD_LOSS = '''
import torch
from torch import nn


class AcmeLoss(nn.Module):
    """Squared logit norm (a toy)."""

    def __init__(self, weight=1.0):
        super().__init__()
        self.weight = weight

    def forward(self, logits, target):
        return self.weight * (logits ** 2).mean()


class AcmeScore(nn.Module):
    """Logit norm (a toy)."""

    def forward(self, logits):
        return logits.norm(dim=1)
'''

# one module per fault; every module but the first two declares the right API version
FAULTS = {
    "broken-import": "import this_module_does_not_exist_anywhere\n",
    "broken-hook": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_losses(register):
    register(name="half-registered", target="x.y:Z", summary="s", paper="",
             tasks=("classification",), uses_ood=False, scorer="msp", inputs=("logits",))
    raise RuntimeError("boom in the hook")
""",
    "broken-duplicate": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_losses(register):
    for name in ("cross-entropy", "dup-loss", "dup-loss"):
        register(name=name, target="broken_oodx.nothing:Here", summary="impostor", paper="",
                 tasks=("classification",), uses_ood=False, scorer="msp", inputs=("logits",))
""",
    "broken-clash": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_scorers(register):
    register(name="acme-score", target="broken_oodx.nothing:Here", summary="squatter",
             reads="logits", needs_fit=False, tasks=("classification",))
""",
    "broken-exit": "raise SystemExit('plugin says goodbye')\n",
    "broken-base": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

class Custom(BaseException):
    pass

@hookimpl
def oodx_register_losses(register):
    raise Custom("a BaseException from the hook")
""",
    "broken-typo": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_loss(register):
    pass
""",
    "broken-metadata": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_scorers(register):
    register(name="No Spaces Allowed", target="a.b:C", summary="s", reads="logits",
             needs_fit=False, tasks=("classification",))
    register(name="missing-fields", target="a.b:C")
    register(name="valid-scorer", target="acme_oodx.loss:AcmeScore", summary="fine",
             reads="logits", needs_fit=False, tasks=("classification",))
""",
    "broken-target": """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_losses(register):
    register(name="ghost", target="broken_oodx.missing_module:Nope", summary="s", paper="",
             tasks=("classification",), uses_ood=False, scorer="msp", inputs=("logits",))
""",
    "broken-api": """
from ood_core import hookimpl
OODX_PLUGIN_API = 99

@hookimpl
def oodx_register_losses(register):
    raise AssertionError("an incompatible plugin's hooks must not be called")
""",
}


def _write_dist(
    root: Path, dist: str, package: str, modules: dict[str, str], eps: dict[str, str]
) -> Path:
    root.mkdir(parents=True)
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    for name, source in modules.items():
        (root / package / f"{name}.py").write_text(textwrap.dedent(source))
    entry_points = "\n".join(f'"{k}" = "{v}"' for k, v in eps.items())
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=77"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.2.3"
            requires-python = ">=3.10"
            dependencies = ["ood-core"]

            [project.entry-points.oodx]
            """
        ).lstrip()
        + entry_points
        + "\n"
    )
    return root


@pytest.fixture(scope="module")
def venv_with_plugins(tmp_path_factory, wheelhouse, wheel_venv):
    src = tmp_path_factory.mktemp("throwaway")
    good = _write_dist(
        src / "good",
        "ood-plugin-acme",
        "acme_oodx",
        {"plugin": GOOD_PLUGIN, "loss": GOOD_LOSS},
        {"acme": "acme_oodx.plugin"},
    )
    broken = _write_dist(
        src / "broken",
        "ood-plugin-broken",
        "broken_oodx",
        {name.replace("-", "_"): code for name, code in FAULTS.items()},
        {name: f"broken_oodx.{name.replace('-', '_')}" for name in FAULTS},
    )
    wheel_venv.install(wheelhouse.build(good), wheelhouse.build(broken))
    yield wheel_venv
    wheel_venv.uninstall("ood-plugin-acme", "ood-plugin-broken")


REPORT = """
import json, sys
import ood_core
plugins = {p.name: p.to_dict() for p in ood_core.list_plugins()}
out = {"plugins": plugins, "losses": [i.name for i in ood_core.list_losses()],
       "scorers": [i.name for i in ood_core.list_scorers()],
       "torch_imported": "torch" in sys.modules}
print(json.dumps(out))
"""


def _report(env, **vars):
    return json.loads(env.run_python(REPORT, env=vars).stdout)


def test_good_plugin_created_beside_broken_ones(venv_with_plugins):
    code = """
import ood_core, torch
loss = ood_core.create_loss("acme-loss", weight=2.0)
print(type(loss).__module__, type(loss).__name__, float(loss(torch.ones(2, 3), torch.zeros(2).long())))
"""
    out = venv_with_plugins.run_python(code).stdout.split()
    assert out == ["acme_oodx.loss", "AcmeLoss", "2.0"]


def test_listing_does_not_import_torch(venv_with_plugins):
    report = _report(venv_with_plugins)
    assert report["torch_imported"] is False
    assert "acme-loss" in report["losses"] and "cross-entropy" in report["losses"]


@pytest.mark.parametrize(
    "plugin, status, message",
    [
        ("broken-import", "error", "this_module_does_not_exist_anywhere"),
        ("broken-hook", "partial", "boom in the hook"),
        ("broken-duplicate", "partial", "already registered by plugin 'builtin'"),
        ("broken-duplicate", "partial", "already registered by plugin 'broken-duplicate'"),
        ("broken-clash", "partial", "more than one distribution: ood-plugin-acme"),
        ("broken-exit", "error", "SystemExit: plugin says goodbye"),
        ("broken-base", "partial", "Custom: a BaseException from the hook"),
        ("broken-typo", "error", "did you mean 'oodx_register_losses'"),
        ("broken-metadata", "partial", "missing required field"),
        ("broken-api", "incompatible", "upgrade ood-core"),
    ],
)
def test_each_fault_is_reported_and_isolated(venv_with_plugins, plugin, status, message):
    report = _report(venv_with_plugins)
    info = report["plugins"][plugin]
    assert info["status"] == status, info
    assert info["distribution"] == "ood-plugin-broken"
    assert any(message in e for e in info["errors"]), info["errors"]
    assert "acme-loss" in report["losses"]  # the good plugin keeps working


def test_registrations_of_faulty_plugins(venv_with_plugins):
    report = _report(venv_with_plugins)
    assert "half-registered" not in report["losses"]  # dropped with the hook that raised
    assert "valid-scorer" in report["scorers"]  # the valid registration beside bad ones stays
    assert "No Spaces Allowed" not in report["scorers"]
    # built-in names are reserved; within one distribution the first registration wins
    assert report["plugins"]["acme"]["registered"]["loss"] == ["acme-loss"]
    assert report["plugins"]["broken-duplicate"]["registered"]["loss"] == ["dup-loss"]
    # a name two distributions register goes to neither
    assert "acme-score" not in report["scorers"]
    assert report["plugins"]["acme"]["status"] == "partial"


def test_clashing_name_is_refused_until_one_side_is_disabled(venv_with_plugins):
    code = """
import ood_core
try:
    ood_core.create_scorer("acme-score")
except ood_core.NameClashError as exc:
    print("REFUSED", exc)
"""
    out = venv_with_plugins.run_python(code).stdout
    assert "REFUSED scorer 'acme-score'" in out
    assert "ood-plugin-acme (plugin 'acme')" in out and "ood-plugin-broken" in out
    assert "OODX_DISABLE_PLUGINS=broken-clash keeps the one from ood-plugin-acme" in out


def test_target_failing_on_first_use(venv_with_plugins):
    code = """
import ood_core
try:
    ood_core.create_loss("ghost")
except ood_core.PluginLoadError as exc:
    print("ERR", exc)
print(ood_core.create_loss("acme-loss").__class__.__name__)
status = {p.name: (p.status, p.errors) for p in ood_core.list_plugins()}
print(status["broken-target"])
"""
    out = venv_with_plugins.run_python(code).stdout
    assert "ERR loss 'ghost': target 'broken_oodx.missing_module:Nope' failed to import" in out
    assert "ood-plugin-broken" in out
    assert "AcmeLoss" in out
    assert "('partial'" in out


def test_disable_and_allow_lists(venv_with_plugins):
    disabled = _report(venv_with_plugins, OODX_DISABLE_PLUGINS="acme,broken-typo")
    assert disabled["plugins"]["acme"]["status"] == "disabled"
    assert disabled["plugins"]["acme"]["registered"]["loss"] == []
    # with acme out of the way, the other side of the clash gets the name
    assert disabled["plugins"]["broken-clash"]["registered"]["scorer"] == ["acme-score"]
    assert disabled["plugins"]["broken-clash"]["status"] == "ok"
    assert disabled["plugins"]["broken-hook"]["status"] == "partial"

    only_builtin = _report(venv_with_plugins, OODX_PLUGINS="")
    assert only_builtin["losses"] == ["cross-entropy"]
    assert {p["status"] for n, p in only_builtin["plugins"].items() if n != "builtin"} == {
        "disabled"
    }

    only_acme = _report(venv_with_plugins, OODX_PLUGINS="acme")
    assert only_acme["losses"] == ["acme-loss", "cross-entropy"]
    by_dist = _report(venv_with_plugins, OODX_PLUGINS="ood-plugin-acme")
    assert by_dist["losses"] == ["acme-loss", "cross-entropy"]


def test_unknown_name_lists_installed_and_close_matches(venv_with_plugins):
    code = """
import ood_core
try:
    ood_core.create_loss("acme-los")
except LookupError as exc:
    print(exc)
"""
    out = venv_with_plugins.run_python(code).stdout
    assert "Did you mean 'acme-loss'" in out
    assert "cross-entropy" in out
