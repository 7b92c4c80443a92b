"""Every first-party distribution builds a wheel with correct metadata, installs into a fresh
environment beside ood-core, and its registrations are discovered and created there."""

from __future__ import annotations

import json
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

PLUGIN_DIRS = sorted(p.parent for p in (REPO / "plugins").glob("*/pyproject.toml"))
DIST_DIRS = [
    REPO,
    *PLUGIN_DIRS,
    *sorted(p.parent for p in (REPO / "exporters").glob("*/pyproject.toml")),
]
if (REPO / "cli" / "pyproject.toml").exists():
    DIST_DIRS.append(REPO / "cli")


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("src", DIST_DIRS, ids=lambda p: p.name if p != REPO else "ood-core")
def test_wheel_metadata(wheelhouse, src):
    project = _project(src)
    wheel = wheelhouse.build(src)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        eps = next(
            (zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), ""
        )
    assert meta["Name"] == project["name"]
    assert meta["Version"] == project["version"]
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Summary"]
    requires = meta.get_all("Requires-Dist") or []
    if src != REPO:
        assert any(r.startswith("ood-core") for r in requires), requires
    assert not any(n.split("/")[0] in ("tests", "cli", "exporters", "plugins") for n in names), (
        names
    )
    for group, entries in project.get("entry-points", {}).items():
        assert f"[{group}]" in eps
        for name in entries:
            assert name in eps


@pytest.fixture(scope="module")
def venv_with_all_plugins(wheelhouse, wheel_venv):
    wheels = [wheelhouse.build(p) for p in PLUGIN_DIRS]
    wheel_venv.install(*wheels)
    yield wheel_venv
    wheel_venv.uninstall(*[_project(p)["name"] for p in PLUGIN_DIRS])


def test_every_plugin_discovered_and_created_from_wheels(venv_with_all_plugins):
    expected = {}
    for src in PLUGIN_DIRS:
        (ep_name,) = _project(src)["entry-points"]["oodx"]
        expected[ep_name] = _project(src)["name"]
    code = """
import json, sys
import ood_core
plugins = {p.name: p.to_dict() for p in ood_core.list_plugins()}
light = "torch" not in sys.modules
created = {}
for info in ood_core.list_losses():
    try:
        loss = ood_core.create_loss(info.name)
        created[info.name] = type(loss).__name__
    except (TypeError, ValueError):  # required keywords: resolving the class is enough
        created[info.name] = "needs-args:" + info.load().__name__
print(json.dumps({"plugins": plugins, "light": light, "created": created}))
"""
    report = json.loads(venv_with_all_plugins.run_python(code).stdout)
    assert report["light"], "listing plugins imported torch"
    for ep_name, dist in expected.items():
        info = report["plugins"][ep_name]
        assert info["status"] == "ok", (ep_name, info["errors"])
        assert info["distribution"] == dist
        for loss in info["registered"]["loss"]:
            assert loss in report["created"], loss
