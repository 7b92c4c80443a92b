"""Run the Python examples of a README, so a plugin's documented usage is tested."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: str | Path) -> list[str]:
    """The source of every fenced ```` ```python ```` block of the Markdown file ``path``."""
    return _BLOCK.findall(Path(path).read_text(encoding="utf-8"))


def run_readme_examples(path: str | Path) -> dict[str, Any]:
    """Execute the ```` ```python ```` blocks of ``path`` in order, in one shared namespace.

    Returns the namespace, so a test can assert on what the example computed. Raises
    ``AssertionError`` when the file has no Python block.
    """
    blocks = python_blocks(path)
    assert blocks, f"{path}: no ```python block to run"
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    for i, source in enumerate(blocks):
        exec(compile(source, f"{path}[python block {i + 1}]", "exec"), namespace)  # noqa: S102
    return namespace
