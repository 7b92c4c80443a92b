"""`oodx export --format NAME` reaches exporters through the registry: a third-party exporter
from a throwaway plugin is called with the exporter calling convention (docs/plugins.md)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import ood_core
from ood_core.registry import Registry, set_registry

try:
    import oodx.commands.export  # noqa: F401
except ImportError:  # the cli distribution is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from oodx.commands.export import export  # noqa: E402

TOY = '''
"""A toy exporter: writes what it was given as JSON."""
import json

from ood_core import hookimpl

OODX_PLUGIN_API = 1


def export_toy(checkpoint, path, *, scorer=None, options=None):
    record = {
        "scorer": scorer.name,
        "source": scorer.source,
        "reads": scorer.reads,
        "module": type(scorer.scorer).__name__,
        "loss": checkpoint.loss_name,
        "classes": checkpoint.classes,
        "options": dict(options or {}),
    }
    with open(path, "w") as f:
        json.dump(record, f)
    return f"toy wrote {path}"


export_toy.options = ("greeting",)


@hookimpl
def oodx_register_exporters(register):
    register(name="toy", target="toy_oodx:export_toy", summary="Writes JSON.", suffix=".toy")
'''


@pytest.fixture(scope="module")
def plugin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the module ``toy_oodx`` and a ``.dist-info`` naming it in group ``oodx``."""
    root = tmp_path_factory.mktemp("toy")
    (root / "toy_oodx.py").write_text(TOY)
    info = root / "toy_oodx-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-oodx\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[oodx]\ntoy = toy_oodx\n")
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    return ood_core.save(
        tmp_path_factory.mktemp("model") / "model.pt",
        model,
        loss=ood_core.create_loss("cross-entropy"),
        example_input=torch.randn(2, 5),
        classes=["a", "b", "c"],
    )


@pytest.fixture
def toy_registry(plugin_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In this process: the built-in plugin, the toy plugin and MCHAD's (no other exporter)."""
    monkeypatch.syspath_prepend(str(plugin_root))
    plugins = {"toy": importlib.import_module("toy_oodx")}
    for point in entry_points(group="oodx", name="mchad"):
        plugins["mchad"] = point.load()
    old = set_registry(Registry.from_plugins(plugins))
    try:
        yield
    finally:
        set_registry(old)


def _oodx(plugin_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OODX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_root), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "oodx", "export", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_installed_toy_exporter_is_called(plugin_root: Path, ckpt: Path) -> None:
    proc = _oodx(plugin_root, str(ckpt), "--format", "toy", "--option", "greeting=hi")
    assert proc.returncode == 0, proc.stderr
    out = ckpt.with_suffix(".toy")  # the registration's suffix
    assert f"toy wrote {out}" in proc.stdout
    assert json.loads(out.read_text()) == {
        "scorer": "msp",  # cross-entropy's natural scorer, resolved by ood_core
        "source": "from the trained loss 'cross-entropy'",
        "reads": "logits",
        "module": "MaxSoftmax",
        "loss": "cross-entropy",
        "classes": ["a", "b", "c"],
        "options": {"greeting": "hi"},
    }


def test_unknown_format_lists_the_installed_exporters(plugin_root: Path, ckpt: Path) -> None:
    proc = _oodx(plugin_root, str(ckpt), "--format", "nope")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no exporter named 'nope'" in proc.stderr
    assert "installed exporters: onnx, toy" in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fp16"], "exporter 'toy' has no option 'fp16' (--fp16); it takes: greeting"),
        (["--opset", "18"], "has no option 'opset' (--opset)"),
        (["--option", "colour=red"], "has no option 'colour' (--option colour=...)"),
    ],
)
def test_options_the_exporter_does_not_declare(
    toy_registry: None, ckpt: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out.toy"
    result = CliRunner().invoke(export, [str(ckpt), "-f", "toy", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_refused_scorer_never_reaches_the_exporter(
    toy_registry: None, ckpt: Path, tmp_path: Path
) -> None:
    if "mchad" not in {s.name for s in ood_core.list_scorers()}:
        pytest.skip("ood-plugin-mchad is not installed")
    out = tmp_path / "out.toy"
    result = CliRunner().invoke(export, [str(ckpt), "-f", "toy", "-o", str(out), "-s", "mchad"])
    assert result.exit_code == 1, result.output
    assert "the model outputs logits" in result.output
    assert not out.exists()


def test_unknown_format_in_process(toy_registry: None, ckpt: Path) -> None:
    result = CliRunner().invoke(export, [str(ckpt), "--format", "onnx"])
    assert result.exit_code == 2
    assert "no exporter named 'onnx'" in result.output
    assert "installed exporters: toy" in result.output
