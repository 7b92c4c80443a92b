"""ood_core.testing.readme: extracting and running a README's Python examples."""

import pytest

from ood_core.testing.readme import python_blocks, run_readme_examples

README = """# Title

```python
x = 1 + 1
```

Some text, and a block in another language that must be left alone:

```bash
echo no
```

```python
y = x * 3
```
"""


def test_python_blocks_finds_only_python(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README)
    assert python_blocks(path) == ["x = 1 + 1\n", "y = x * 3\n"]


def test_run_shares_one_namespace(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README)
    assert run_readme_examples(path)["y"] == 6


def test_errors_propagate_and_empty_readme_fails(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("```python\nraise RuntimeError('boom')\n```\n")
    with pytest.raises(RuntimeError, match="boom"):
        run_readme_examples(bad)
    empty = tmp_path / "empty.md"
    empty.write_text("# nothing\n")
    with pytest.raises(AssertionError, match="no ```python block"):
        run_readme_examples(empty)
