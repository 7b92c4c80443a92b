"""``oodx new-plugin``: the scaffold renders, and a filled-in scaffold is a working plugin.

The slow test scaffolds a plugin, fills in a trivial loss and scorer where the skeleton says
FILL IN, builds wheels of ood-core, the exporter, the CLI and the scaffold, installs them into a
fresh virtual environment (torch from the index, no system site-packages) and checks there that
``oodx losses`` lists the new loss, ``oodx plugins check`` passes and the scaffold's own tests
(the conformance kit and a training smoke test) pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from oodx.main import cli
from oodx.scaffold import PluginNames, render

#: the trivial method the slow test fills in: cross-entropy on ID plus the outlier-exposure
#: term on outliers, scored by the negative maximum logit
FILLED_LOSS = """\
        import torch

        from ood_core.functional import cross_entropy

        ce = cross_entropy(logits, target, reduction="none")
        uniform = -torch.log_softmax(logits, dim=1).mean(dim=1)
        return ce * known.to(logits.dtype) + self.alpha * uniform * unknown.to(logits.dtype)
"""
FILLED_SCORE = """\
        return -x.amax(dim=1)
"""
_BLOCK = re.compile(r" *# >>> FILL IN.*?# <<< FILL IN[^\n]*\n", re.S)


def fill_in(path: Path, body: str) -> None:
    """Replace the one ``# >>> FILL IN`` ... ``# <<< FILL IN`` block of ``path`` with ``body``."""
    text, n = _BLOCK.subn(lambda _: body, path.read_text())
    assert n == 1, f"{path}: expected one FILL IN block, found {n}"
    path.write_text(text)


def scaffold(tmp_path: Path, name: str = "toy-method") -> Path:
    target = tmp_path / f"ood-plugin-{name}"
    result = CliRunner().invoke(cli, ["new-plugin", name, "--dir", str(target)])
    assert result.exit_code == 0, result.output
    return target


def test_names():
    names = PluginNames.from_name("My_Method")
    assert (names.name, names.dist, names.module) == (
        "my-method",
        "ood-plugin-my-method",
        "ood_plugin_my_method",
    )
    assert (names.loss_class, names.scorer_class) == ("MyMethodLoss", "MyMethodScorer")
    assert PluginNames.from_name("ood-plugin-abc").name == "abc"


@pytest.mark.parametrize(
    "bad", ["", "9lives", "no spaces", "bad!", "x-", "m\u0441had", "\uff4dchad", "a\u200bb"]
)
def test_invalid_name_is_a_user_error(tmp_path, bad):
    result = CliRunner().invoke(cli, ["new-plugin", bad, "--dir", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "not valid" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("length, ok", [(64, True), (65, False), (300, False), (5000, False)])
def test_name_length_is_checked_before_writing(tmp_path, length, ok):
    result = CliRunner().invoke(cli, ["new-plugin", "a" * length, "--dir", str(tmp_path / "x")])
    assert result.exit_code == (0 if ok else 1), result.output
    if not ok:
        assert "Error: plugin name 'aaaa" in result.output
        assert f"is {length} characters long" in result.output and "at most 64" in result.output
        assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_unwritable_folder_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(cli, ["new-plugin", "toy", "--dir", str(tmp_path / "file" / "x")])
    assert result.exit_code == 1, result.output
    assert "Error: cannot write" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "name, taken_by, what",
    [
        ("mchad", "ood-plugin-mchad", "the distribution name, the plugin name 'mchad', the loss"),
        ("cross-entropy", "ood-core", "the loss name 'cross-entropy'"),
        ("MSP\n", "ood-core", "the scorer name 'msp'"),
    ],
)
def test_name_taken_by_an_installed_plugin_warns_and_still_scaffolds(
    tmp_path, name, taken_by, what
):
    target = tmp_path / "x"
    result = CliRunner().invoke(cli, ["new-plugin", name, "--dir", str(target)])
    assert result.exit_code == 0, result.output
    warning = next(ln for ln in result.stderr.splitlines() if ln.startswith("Warning:"))
    assert f"is taken by the installed {taken_by}" in warning and what in warning
    assert (target / "pyproject.toml").is_file()


def test_fresh_name_does_not_warn(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "toy-method", "--dir", str(tmp_path / "x")])
    assert result.exit_code == 0 and "Warning" not in result.output


def test_scaffold_layout_and_placeholders(tmp_path):
    root = scaffold(tmp_path)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "ood_plugin_toy_method/__init__.py",
        "ood_plugin_toy_method/loss.py",
        "ood_plugin_toy_method/plugin.py",
        "ood_plugin_toy_method/scorer.py",
        "pyproject.toml",
        "tests/test_conformance.py",
        "tests/test_training.py",
    ]
    for path in root.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    pyproject = (root / "pyproject.toml").read_text()
    assert "[project.entry-points.oodx]" in pyproject
    assert 'toy-method = "ood_plugin_toy_method.plugin"' in pyproject
    plugin = (root / "ood_plugin_toy_method/plugin.py").read_text()
    assert "OODX_PLUGIN_API = PLUGIN_API_VERSION" in plugin and "import torch" not in plugin
    for module in ("loss.py", "scorer.py"):
        text = (root / "ood_plugin_toy_method" / module).read_text()
        assert len(_BLOCK.findall(text)) == 1 and "NotImplementedError" in text
    assert "parametrize_with_checks" in (root / "tests/test_conformance.py").read_text()
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_refuses_non_empty_folder(tmp_path):
    root = scaffold(tmp_path)
    again = CliRunner().invoke(cli, ["new-plugin", "toy-method", "--dir", str(root)])
    assert again.exit_code == 1 and "not empty" in again.output
    forced = CliRunner().invoke(cli, ["new-plugin", "toy-method", "--dir", str(root), "--force"])
    assert forced.exit_code == 0, forced.output


def test_render_rejects_unknown_placeholder():
    with pytest.raises(KeyError, match="nope"):
        render("{{nope}}", {"name": "x"})


@pytest.mark.slow
def test_filled_in_scaffold_is_a_working_plugin_in_a_fresh_venv(tmp_path, make_venv, wheelhouse):
    env = make_venv("runtime", "exporters/onnx", "cli", requirements=["click"], name="new-plugin")
    # scaffold with the installed CLI: the templates ship in its wheel
    root = tmp_path / "ood-plugin-toy-method"
    env.run("oodx", "new-plugin", "toy-method", "--dir", root)
    fill_in(root / "ood_plugin_toy_method" / "loss.py", FILLED_LOSS)
    fill_in(root / "ood_plugin_toy_method" / "scorer.py", FILLED_SCORE)
    env.install(wheelhouse.build(root))
    # the plugin comes from its wheel, not from the source folder or the repo's .venv
    where = env.run_python("import ood_plugin_toy_method as m; print(m.__file__)").stdout
    assert "site-packages" in where and str(root) not in where

    losses = env.run("oodx", "losses").stdout
    assert re.search(r"^toy-method\s+toy-method\s+classification\s+yes\s+toy-method", losses, re.M)
    # only the new plugin (and the built-ins): the exporter's onnx dependencies are not installed
    check = env.run("oodx", "plugins", "check", env={"OODX_PLUGINS": "toy-method"}).stdout
    assert "ok    toy-method (ood-plugin-toy-method 0.1.0)" in check

    # the scaffold's own tests: the conformance kit and the training smoke test
    result = env.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=root, timeout=900
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
