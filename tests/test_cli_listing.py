"""The ``oodx`` front door: lazy startup, listing commands, ``plugins check``, error handling."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import types

import click
import pytest
from click.testing import CliRunner

import ood_core
from ood_core.registry import Registry, set_registry
from ood_core.testing.fakes import loss_registration
from oodx.main import COMMANDS, cli, main

PY = sys.executable


def run_py(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OODX_")}
    return subprocess.run(
        [PY, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args))


# --------------------------------------------------------------------------------------------
# startup: no torch, fast


@pytest.mark.parametrize(
    "argv", [["--help"], ["plugins"], ["losses"], ["scorers"], ["plugins", "--json"]]
)
def test_listing_never_imports_torch(argv):
    code = (
        "import sys\n"
        "from oodx.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = run_py(code, *argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []", proc.stdout


def test_python_dash_m_and_speed():
    start = time.perf_counter()
    proc = subprocess.run(
        [PY, "-m", "oodx", "plugins"], capture_output=True, text=True, timeout=120
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "builtin" in proc.stdout and "ood-core" in proc.stdout
    # target is < 0.5 s on an idle machine; the bound here only catches a torch import (seconds)
    assert elapsed < 5, elapsed


def test_help_lists_every_command_without_importing_them():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
    assert "oodx demo" in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, result.output
    assert f"oodx {name}" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "oodx" in result.output


# --------------------------------------------------------------------------------------------
# listings


def test_plugins_table_and_json():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["PLUGIN", "DISTRIBUTION", "VERSION", "LOAD", "STATUS", "REGISTERS"]
    assert re.search(r"^builtin\s+ood-core\s+\S+\s+\d+ ms\s+ok\s", result.output, re.M)
    assert "cross-entropy" in result.output
    data = json.loads(invoke("plugins", "--json").output)
    builtin = next(p for p in data if p["name"] == "builtin")
    assert builtin["status"] == "ok" and "cross-entropy" in builtin["registered"]["loss"]
    assert {"distribution", "version", "errors", "status", "warnings", "clashes"} <= set(builtin)
    assert isinstance(builtin["import_seconds"], float) and builtin["import_seconds"] >= 0


def test_losses_and_scorers():
    losses = invoke("losses")
    assert losses.exit_code == 0
    assert losses.output.split()[:6] == ["LOSS", "PLUGIN", "TASKS", "OOD", "DATA", "SCORER"]
    line = next(ln for ln in losses.output.splitlines() if ln.startswith("cross-entropy"))
    assert re.search(r"\(ce[,)]", line) and "builtin" in line and " no " in line and "msp" in line
    data = json.loads(invoke("losses", "--json").output)
    names = {d["name"] for d in data}
    assert names == {i.name for i in ood_core.list_losses()}
    ce = next(d for d in data if d["name"] == "cross-entropy")
    assert ce["uses_ood"] is False and ce["scorer"] == "msp" and "paper" in ce

    scorers = invoke("scorers")
    assert scorers.exit_code == 0
    line = next(ln for ln in scorers.output.splitlines() if ln.startswith("energy"))
    assert "logits" in line and "Liu" in line
    seg = json.loads(invoke("scorers", "--json", "--task", "segmentation").output)
    assert all("segmentation" in d["tasks"] for d in seg)


# --------------------------------------------------------------------------------------------
# plugins check, with a fake registry


def _plugin(name: str, register_losses=None, register_scorers=None, api: int = 1):
    from ood_core import hookimpl

    mod = types.ModuleType(name)
    mod.OODX_PLUGIN_API = api
    if register_losses is not None:
        mod.oodx_register_losses = hookimpl(register_losses)
    if register_scorers is not None:
        mod.oodx_register_scorers = hookimpl(register_scorers)
    return mod


@pytest.fixture
def fake_registry():
    installed = []

    def install(plugins):
        old = set_registry(Registry.from_plugins(plugins))
        installed.append(old)

    yield install
    if installed:
        set_registry(installed[0])


def test_plugins_check_passes_on_installed_plugins(fake_registry):
    fake_registry({})  # built-ins only: fast
    result = invoke("plugins", "check")
    assert result.exit_code == 0, result.output
    assert "ok    builtin" in result.output and "passed" in result.output


def test_plugins_check_fails_on_broken_plugins(fake_registry):
    def good(register):
        register(**loss_registration(name="good-loss", summary="ok", paper="p"))

    def bad_target(register):
        register(
            **loss_registration(
                name="ghost",
                target="no_such_module_anywhere:Loss",
                summary="missing",
                paper="p",
                scorer="nowhere",
            )
        )

    def raising(register):
        raise RuntimeError("boom")

    fake_registry(
        [
            ("good", _plugin("good", good)),
            ("ghost", _plugin("ghost", bad_target)),
            ("raising", _plugin("raising", raising)),
            ("old", _plugin("old", good, api=0)),
        ]
    )
    result = invoke("plugins", "check")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "ok    good" in out
    assert "FAIL  ghost" in out and "no_such_module_anywhere" in out and "'nowhere'" in out
    assert "FAIL  raising" in out and "boom" in out
    assert "FAIL  old" in out and "API" in out
    assert "3 of 5 plugin(s) failed" in out
    data = json.loads(invoke("plugins", "check", "--json").output)
    assert {d["plugin"]: d["ok"] for d in data} == {
        "builtin": True,
        "good": True,
        "ghost": False,
        "raising": False,
        "old": False,
    }

    listing = invoke("plugins")
    assert listing.exit_code == 0  # listing reports, it does not fail
    assert "Problems:" in listing.output and "boom" in listing.output


@pytest.mark.parametrize(
    "inputs, reads, needs_fit, problem",
    [
        (("logits", "target"), "embedding", False, "reads embedding but the model outputs logits"),
        (("distances", "target"), "logits", False, "reads logits but the model outputs embedding"),
        (("logits", "target"), ("logits", "features"), False, "reads logits, features"),
        (("logits", "target"), "logits", True, "'fit-me' must be fitted"),
        (("embedding", "target"), "embedding", False, None),
        (("logits", "target"), "inputs", False, None),
        (("logits", "features", "target"), "features", False, None),  # a dict of both
        (("logits", "features", "target"), ("logits", "features"), False, None),
        (
            ("logits", "features", "target"),
            "embedding",
            False,
            "the model outputs logits, features",
        ),
    ],
)
def test_plugins_check_applies_the_resolver_to_a_loss_and_its_natural_scorer(
    fake_registry, inputs, reads, needs_fit, problem
):
    name = "fit-me" if needs_fit else "near"

    def hooks(register):
        register(
            name="mismatch",
            target="ood_core.builtin.losses:CrossEntropyLoss",
            summary="a loss",
            paper="p",
            tasks=("classification",),
            uses_ood=False,
            scorer=name,
            inputs=inputs,
        )

    def scorers(register):
        register(
            name=name,
            target="ood_core.nearest_center:NearestCenterScorer",
            summary="a scorer",
            reads=reads,
            needs_fit=needs_fit,
            tasks=("classification",),
        )

    fake_registry([("p", _plugin("p", hooks, register_scorers=scorers))])
    result = invoke("plugins", "check")
    if problem is None:
        assert result.exit_code == 0, result.output
        assert "ok    p" in result.output
    else:
        assert result.exit_code == 1, result.output
        assert "FAIL  p" in result.output and "loss 'mismatch': " in result.output
        assert problem in result.output, result.output
    listing = invoke("scorers")
    shown = reads if isinstance(reads, str) else " + ".join(reads)
    assert listing.exit_code == 0 and shown in listing.output


# --------------------------------------------------------------------------------------------
# errors a person can act on


def test_unknown_loss_suggests_close_names_without_traceback():
    result = invoke("demo", "--loss", "cross-entropi")
    assert result.exit_code == 1
    assert "Did you mean 'cross-entropy'" in result.output
    assert "Traceback" not in result.output


def test_unknown_command_suggests():
    result = invoke("lossses")
    assert result.exit_code == 2 and "did you mean losses" in result.output


def test_debug_shows_the_traceback():
    code = "from oodx.main import main; main(['--debug', 'demo', '--loss', 'cross-entropi'])"
    proc = run_py(code)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "UnknownNameError" in proc.stderr
    quiet = run_py("from oodx.main import main; main(['demo', '--loss', 'cross-entropi'])")
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert "Error: no loss named 'cross-entropi'" in quiet.stderr


def test_unexpected_errors_point_to_debug(monkeypatch):
    import oodx.commands.listing as listing

    def broken():
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(ood_core, "list_losses", broken)
    result = invoke("losses")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unexpected ZeroDivisionError: oops" in result.output and "--debug" in result.output
    assert listing  # the command module was imported lazily by then


def test_main_entry_point_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["losses", "--json"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------------------------
# plugins that try to take over or take down: a real entry point on sys.path (a .dist-info
# folder, no wheel build) beside the installed first-party plugins

HIJACK = """
from ood_core import hookimpl
OODX_PLUGIN_API = 1

@hookimpl
def oodx_register_losses(register):
    register(name="mchad", target="evil_oodx.hijack:Loss", summary="Not MCHAD.", paper="",
             tasks=("classification",), uses_ood=False, scorer="msp", inputs=("logits",))
"""
EXITS = "raise SystemExit('goodbye')\n"


class Goodbye(BaseException):
    pass


@pytest.fixture(scope="module")
def evil_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil")
    (root / "evil_oodx").mkdir()
    (root / "evil_oodx" / "__init__.py").write_text("")
    (root / "evil_oodx" / "hijack.py").write_text(HIJACK)
    (root / "evil_oodx" / "exits.py").write_text(EXITS)
    (root / "evil_oodx" / "custom.py").write_text(
        "class Goodbye(BaseException): pass\nraise Goodbye('custom')\n"
    )
    info = root / "evil_oodx-6.6.6.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-oodx\nVersion: 6.6.6\n")
    (info / "entry_points.txt").write_text(
        "[oodx]\naaa-hijack = evil_oodx.hijack\naaa-exit = evil_oodx.exits\n"
        "aaa-custom = evil_oodx.custom\n"
    )
    return str(root)


def run_with(evil_path: str, code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OODX_")}
    full.update(env, PYTHONPATH=os.pathsep.join(filter(None, [evil_path, full.get("PYTHONPATH")])))
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, env=full, timeout=120)


def test_plugin_sorting_first_cannot_take_over_a_name(evil_path):
    code = (
        "import ood_core\n"
        "try:\n    ood_core.create_loss('mchad')\n"
        "except ood_core.NameClashError as exc:\n    print('REFUSED', exc)\n"
    )
    proc = run_with(evil_path, code)
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED loss 'mchad'" in proc.stdout
    assert "evil-oodx (plugin 'aaa-hijack')" in proc.stdout
    assert "ood-plugin-mchad (plugin 'mchad')" in proc.stdout
    assert "OODX_DISABLE_PLUGINS=aaa-hijack" in proc.stdout
    # once the hijacker is disabled, the real one resolves (metadata only: no torch needed)
    code = "import ood_core; print(ood_core.get_info('loss', 'mchad').distribution)"
    fixed = run_with(evil_path, code, OODX_DISABLE_PLUGINS="aaa-hijack")
    assert fixed.stdout.strip() == "ood-plugin-mchad", fixed.stderr


def test_plugins_listing_reports_clash_and_base_exceptions(evil_path):
    proc = run_with(evil_path, "from oodx.main import main; main(['plugins'])")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^aaa-exit\s+evil-oodx\s+6\.6\.6\s+\d+ ms\s+error\s", out, re.M), out
    assert "failed to import evil_oodx.exits: SystemExit: goodbye" in out
    assert "failed to import evil_oodx.custom: Goodbye: custom" in out
    assert re.search(r"^mchad\s+ood-plugin-mchad.*partial", out, re.M), out
    assert "loss 'mchad' is registered by more than one distribution" in out
    assert "Traceback" not in proc.stderr
    data = run_with(evil_path, "from oodx.main import main; main(['plugins', '--json'])")
    plugins = {p["name"]: p for p in json.loads(data.stdout)}
    clash = plugins["mchad"]["clashes"][0]
    assert clash["name"] == "mchad" and {c["distribution"] for c in clash["claimed_by"]} == {
        "evil-oodx",
        "ood-plugin-mchad",
    }
    assert plugins["aaa-hijack"]["clashes"] == plugins["mchad"]["clashes"]
    assert plugins["aaa-exit"]["status"] == "error"
    assert all(isinstance(p["import_seconds"], float) for p in plugins.values())


def test_plugins_check_fails_on_a_clash(fake_registry):
    def toy(register):
        register(**loss_registration(summary="ok", paper="p"))

    fake_registry([("one", _plugin("one", toy)), ("two", _plugin("two", toy))])
    result = invoke("plugins", "check")
    assert result.exit_code == 1 and "more than one distribution" in result.output
    demo = invoke("demo", "--loss", "toy", "--steps", "1")
    assert demo.exit_code == 1 and "Traceback" not in demo.output
    assert "Error: loss 'toy' is registered by more than one distribution" in demo.output


def test_slow_plugin_is_shown_in_the_table(fake_registry, monkeypatch):
    from ood_core import registry

    now = [0.0]

    def slow_hook(register):
        now[0] += 1.5

    monkeypatch.setattr(registry, "_clock", lambda: now[0])
    monkeypatch.delenv("OODX_PLUGIN_IMPORT_BUDGET", raising=False)
    with pytest.warns(registry.SlowPluginWarning):
        fake_registry([("slowpoke", _plugin("slowpoke", slow_hook))])
    result = invoke("plugins")
    assert re.search(r"^slowpoke\s+-\s+-\s+1\.5 s\s+ok", result.output, re.M), result.output
    assert "Slow plugins:" in result.output and "took 1.50 s to load" in result.output
    check = invoke("plugins", "check")
    assert "note: plugin 'slowpoke'" in check.output
