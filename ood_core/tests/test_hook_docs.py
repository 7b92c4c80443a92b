"""Meta-test: every hook is documented in docs/plugins.md with a worked example that works,
and is exercised by a test."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from ood_core.hookspecs import HOOK_NAMES
from ood_core.registry import Registry

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "docs" / "plugins.md").read_text()


def _section(hook: str) -> str:
    match = re.search(rf"^### {hook}\n(.*?)(?=^#{{2,3}} |\Z)", DOCS, re.S | re.M)
    assert match, f"docs/plugins.md has no '### {hook}' section"
    return match.group(1)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_is_documented_with_signature_and_example(hook):
    section = _section(hook)
    assert f"{hook}(register) -> None" in section, f"{hook}: the signature is missing"
    assert "register(" in section, f"{hook}: the register(...) fields are missing"
    examples = re.findall(r"```python\n(.*?)```", section, re.S)
    assert examples, f"{hook}: no worked example"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_worked_example_registers_cleanly(hook):
    (example,) = re.findall(r"```python\n(.*?)```", _section(hook), re.S)
    module = types.ModuleType(f"doc_example_{hook}")
    exec(compile(example, f"docs/plugins.md:{hook}", "exec"), module.__dict__)
    reg = Registry.from_plugins({"doc-example": module})
    info = reg.plugins["doc-example"]
    assert info.status == "ok", info.errors
    assert sum(map(len, info.registered.values())) == 1


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_has_a_test(hook):
    tests = [
        p for p in (REPO / "ood_core" / "tests").glob("test_*.py") if p.name != Path(__file__).name
    ]
    assert any(re.search(rf"def test_{hook}\w*\(", p.read_text()) for p in tests), (
        f"no test function named test_{hook}... in ood_core/tests"
    )
