"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_usage_example_runs():
    text = README.read_text()
    section = text.split("## Using it from Python", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("## ", 1)[0], re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["scores"].shape == (8,)
