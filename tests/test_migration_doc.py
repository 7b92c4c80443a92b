"""docs/migrating-from-pytorch-ood.md agrees with the registry and pytorch-ood 0.4.0, and runs.

The tables of the guide are parsed and checked against ``ood_core``'s registry and the installed
pytorch-ood 0.4.0 (class names, distributions, natural scorers, keywords, state-dict keys); the
recipes that give 0.4.0's values are checked against 0.4.0; every Python block is executed
(the state-dict snippet and the ported MCHAD example).
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import ood_core
from ood_core.testing.readme import python_blocks, run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses

DOC = Path(__file__).resolve().parents[1] / "docs" / "migrating-from-pytorch-ood.md"
TEXT = DOC.read_text(encoding="utf-8")


def table(name: str) -> list[list[str]]:
    """The body rows (cells stripped) of the table after ``<!-- table: name -->``."""
    marker = f"<!-- table: {name} -->"
    assert marker in TEXT, f"{DOC.name}: no table {name!r}"
    lines = TEXT.split(marker, 1)[1].strip().splitlines()
    rows = []
    for line in lines[2:]:  # header and separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"table {name!r} is empty"
    return rows


def code(cell: str) -> list[str]:
    """The `code` spans of a cell."""
    return re.findall(r"`([^`]*)`", cell)


def install(cell: str) -> str:
    (command,) = code(cell)
    assert command.startswith("pip install "), command
    return command.removeprefix("pip install ")


LOSSES = table("losses")
DETECTORS = table("detectors")
SCORERS = table("scorers")
STATE_DICTS = table("state-dicts")
PORT = table("mchad-port")


def _vos(**extra: Any) -> dict[str, Any]:
    return {
        "logistic_regression": torch.nn.Linear(1, 2),
        "weights_energy": torch.nn.Linear(3, 1),
        **extra,
    }


#: constructor keywords valid for both the 0.4.0 class and its oodx twin (fresh modules per call)
KWARGS = {
    "BackgroundClassLoss": lambda: {"n_classes": 3},
    "CACLoss": lambda: {"n_classes": 3},
    "CenterLoss": lambda: {"n_classes": 3, "n_dim": 4},
    "ConfidenceLoss": dict,
    "CrossEntropyLoss": dict,
    "DeepSADLoss": lambda: {"n_dim": 4},
    "DeepSVDDLoss": lambda: {"n_dim": 4},
    "EnergyMarginLoss": lambda: {"full_train_loss": 0.5},
    "EnergyRegularizedLoss": dict,
    "EntropicOpenSetLoss": dict,
    "IILoss": lambda: {"n_classes": 3, "n_embedding": 4},
    "LogitNorm": dict,
    "MCHADLoss": lambda: {"n_classes": 3, "n_dim": 4, "margin": 1.0},
    "ObjectosphereLoss": dict,
    "OutlierExposureLoss": dict,
    "VOSRegLoss": _vos,
    "VirtualOutlierSynthesizingRegLoss": lambda: _vos(
        fc=torch.nn.Linear(4, 3), sample_number=5, sample_from=10
    ),
}


def reference_loss_classes() -> set[str]:
    module = pytorch_ood_losses()
    return {
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, torch.nn.Module)
    }


# --- section 1: names ------------------------------------------------------------------------


def test_loss_table_lists_every_pytorch_ood_loss_and_every_registered_loss():
    documented = [code(row[0])[0] for row in LOSSES]
    assert len(documented) == len(set(documented)), "a class is listed twice"
    assert set(documented) == reference_loss_classes()
    assert {code(row[1])[0] for row in LOSSES} == {info.name for info in ood_core.list_losses()}


@pytest.mark.parametrize("row", LOSSES, ids=[code(r[0])[0] for r in LOSSES])
def test_loss_row_resolves(row):
    (cls,), (name,), (statement,), (scorer,) = (code(row[i]) for i in (0, 1, 3, 4))
    info = ood_core.get_info("loss", cls)
    assert (info.name, info.distribution, info.scorer) == (name, install(row[2]), scorer)
    namespace: dict[str, Any] = {}
    exec(statement, namespace)  # noqa: S102 - the documented import
    assert namespace[cls] is info.load()
    loss = ood_core.create_loss(cls, **KWARGS[cls]())
    assert type(loss) is info.load()


SIGNATURES = table("signatures")


def _call_changes(ours: Any, theirs: Any) -> tuple[set[str], set[str]]:
    """(parameters ``ours`` adds, parameters it gives a default) relative to ``theirs``; fails
    if a 0.4.0 call could break (a renamed, moved or re-defaulted parameter, an added one
    without default)."""
    mine = list(inspect.signature(ours).parameters.values())
    ref = list(inspect.signature(theirs).parameters.values())
    assert [p.name for p in mine[: len(ref)]] == [p.name for p in ref], (ours, theirs)
    assert all(p.default is not p.empty for p in mine[len(ref) :]), ours
    optional = set()
    for a, b in zip(mine, ref):
        if b.default is b.empty and a.default is not a.empty:
            optional.add(a.name)
        elif a.default is not b.default and a.default != b.default:
            raise AssertionError(f"{ours.__qualname__}: default of {a.name} changed")
    return {p.name for p in mine[len(ref) :]}, optional


def _public_methods(cls: type) -> list[str]:
    return [
        name
        for name, value in inspect.getmembers(cls, callable)
        if (name in ("__init__", "forward") or not name.startswith("_"))
        and getattr(value, "__module__", "").startswith("pytorch_ood")
    ]


@pytest.mark.parametrize("cls", sorted(KWARGS))
def test_every_pytorch_ood_call_works_and_changes_are_documented(cls):
    theirs = getattr(pytorch_ood_losses(), cls)
    ours = ood_core.get_info("loss", cls).load()
    documented = {
        code(r[1])[0]: (set(code(r[2])), set(code(r[3])))
        for r in SIGNATURES
        if code(r[0])[0] == cls
    }
    found = {}
    for method in _public_methods(theirs):
        added, optional = _call_changes(getattr(ours, method), getattr(theirs, method))
        if added or optional:
            found[method] = (added, optional)
    assert found == documented


def _detector_init_params(cls: str) -> list[str]:
    """Parameter names of ``__init__`` of a 0.4.0 detector, read from its source (no import:
    pytorch-ood's detector package needs torchvision)."""
    pytorch_ood_losses()  # checks the version and registers the package
    root = Path(sys.modules["pytorch_ood"].__path__[0])
    for path in sorted((root / "detector").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        return [a.arg for a in item.args.args[1:]]
    raise AssertionError(f"pytorch-ood 0.4.0 has no detector class {cls}")


@pytest.mark.parametrize("row", DETECTORS, ids=[code(r[0])[0] for r in DETECTORS])
def test_detector_row_resolves_and_keywords_map(row):
    (cls,), (name,) = code(row[0]), code(row[1])
    info = ood_core.get_info("scorer", cls)
    assert (info.name, info.distribution) == (name, install(row[2]))
    old_params = _detector_init_params(cls)
    assert old_params[0] == "model", "the guide says: drop the model argument"
    pairs = re.findall(r"`(\w+)` -> `(\w+)`", row[3])
    assert {old for old, _ in pairs} == set(old_params[1:])
    kwargs = {new: torch.ones(3) if new == "weights" else 2.0 for _, new in pairs}
    scorer = ood_core.create_scorer(cls, **kwargs)
    assert type(scorer) is info.load()
    assert scorer(torch.randn(4, 3)).shape == (4,)


@pytest.mark.parametrize("row", SCORERS, ids=[code(r[0])[0] for r in SCORERS])
def test_scorer_row_matches_registration(row):
    (name,), (reads,) = code(row[0]), code(row[2])
    info = ood_core.get_info("scorer", name)
    assert (info.name, info.distribution, info.reads) == (name, install(row[1]), reads)


def test_every_scorer_of_a_loss_distribution_is_in_a_table():
    """Scorers of ood-core and of the distributions that carry 0.4.0's losses are all listed
    (post-hoc scorer plugins, which register no loss, are outside the guide's tables)."""
    dists = {info.distribution for info in ood_core.list_losses()}
    registered = {info.name for info in ood_core.list_scorers() if info.distribution in dists}
    documented = {code(r[1])[0] for r in DETECTORS} | {code(r[0])[0] for r in SCORERS}
    assert documented == registered, f"add to the guide: {sorted(registered - documented)}"


# --- section 2: how to get 0.4.0's value -----------------------------------------------------


def _oe_batch_mean(ref: Any, logits: Tensor, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    old = ref.OutlierExposureLoss(alpha=0.5)(logits, y)
    return old, ood_core.create_loss("outlier-exposure", alpha=0.5, batch_mean=True)(logits, y)


def _logitnorm_none(ref: Any, logits: Tensor, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    old = ref.LogitNorm(t=0.5, reduction="none")(logits, y)
    return old, ood_core.create_loss("LogitNorm", t=0.5, reduction="none")(logits, y)[y >= 0]


def _deep_svdd_none(ref: Any, logits: Tensor, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    old = ref.DeepSVDDLoss(n_dim=3, reduction="none")
    new = ood_core.create_loss("DeepSVDDLoss", n_dim=3, reduction="none")
    new.load_state_dict(old.state_dict())
    return old(z, y), new(z, y)[y >= 0]


def _center_radius(ref: Any, logits: Tensor, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    old = ref.CenterLoss(n_classes=4, n_dim=3, radius=2.0)
    new = ood_core.create_loss("CenterLoss", n_classes=4, n_dim=3, radius=2.0**0.5)
    new.load_state_dict(old.state_dict())  # also 0.4.0's initial centres
    return old(old.distance(z), y), new(new.distance(z), y)


def _mchad_radius(ref: Any, logits: Tensor, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    known = y.clamp(min=0)  # ID only: the outlier term differs whatever the options
    old = ref.MCHADLoss(n_classes=4, n_dim=3, radius=2.0, margin=0.5)
    new = ood_core.create_loss("MCHADLoss", n_classes=4, n_dim=3, radius=2.0**0.5, margin=0.5)
    new.load_state_dict(old.state_dict())
    return old(old.distance(z), known), new(new.distance(z), known)


#: the guide's "0.4.0's value" recipes: 0.4.0's class and the oodx call that matches it
RECIPES = {
    "outlier-exposure batch_mean=True": _oe_batch_mean,
    "logitnorm none, out[target >= 0]": _logitnorm_none,
    "deep-svdd none, out[y >= 0]": _deep_svdd_none,
    "center radius=R ** 0.5": _center_radius,
    "mchad centre term radius=R ** 0.5": _mchad_radius,
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_documented_recipe_gives_pytorch_ood_value(recipe):
    torch.manual_seed(0)
    logits, z = torch.randn(12, 4), torch.randn(12, 3)
    y = torch.tensor([0, 1, 2, 3, 0, 1, -1, -1, 2, 3, -1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops outliers
        old, new = RECIPES[recipe](pytorch_ood_losses(), logits, z, y)
    assert new.shape == old.shape
    torch.testing.assert_close(new, old.detach(), rtol=1e-5, atol=1e-6)


def test_objectosphere_score_on_logits_warns_and_gives_pytorch_ood_value():
    logits = torch.randn(6, 4)
    with pytest.warns(FutureWarning, match="norm of the logits"):
        ours = ood_core.create_loss("ObjectosphereLoss").score(logits)
    torch.testing.assert_close(ours, pytorch_ood_losses().ObjectosphereLoss.score(logits))


# --- section 3: state dicts ------------------------------------------------------------------


def test_state_dict_table_lists_every_pytorch_ood_loss():
    assert {code(row[0])[0] for row in STATE_DICTS} == reference_loss_classes()


@pytest.mark.parametrize("row", STATE_DICTS, ids=[code(r[0])[0] for r in STATE_DICTS])
def test_pytorch_ood_state_dict_loads_as_documented(row):
    (cls,) = code(row[0])
    old = getattr(pytorch_ood_losses(), cls)(**KWARGS[cls]())
    if cls == "IILoss":  # a training step fills the running centres
        old(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    new = ood_core.create_loss(cls, **KWARGS[cls]())
    old_keys, new_keys = set(old.state_dict()), set(new.state_dict())
    assert old_keys == set(code(row[1]))
    assert new_keys - old_keys == set(code(row[2]))
    assert old_keys - new_keys == set(code(row[3]))
    assert (row[4] == "as is") == (bool(old_keys) and old_keys == new_keys)
    state = {k: v.detach().clone() for k, v in old.state_dict().items()}
    new.load_state_dict(state, strict=True)
    for key in old_keys & new_keys:
        torch.testing.assert_close(new.state_dict()[key], state[key])
    if old_keys == new_keys:  # the guide: the other direction works too
        old.load_state_dict(new.state_dict(), strict=True)


# --- section 4 and the snippets: every Python block runs -------------------------------------


def _normal(source: str) -> str:
    return re.sub(r"\s+", "", source)


def test_port_table_matches_the_program():
    program = _normal(python_blocks(DOC)[-1])
    checked = 0
    for old, new in PORT:
        if new == "(same)":
            (line,) = code(old)
        elif new.startswith("("):
            continue
        else:
            (line,) = code(new)
        assert _normal(line) in program, f"ported line missing from the program: {line}"
        checked += 1
    assert checked >= 40


def test_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pytorch_ood_losses()  # makes `from pytorch_ood.loss import ...` work without torchvision
    ns = run_readme_examples(DOC)
    assert ns["ii"].running_centers.counts.tolist() == [1, 1, 1]
    assert ns["results"]["AUROC"] > 0.9 and ns["results"]["ACC"] > 0.85
    model = ns["model"].eval()
    x = torch.randn(5, 32)
    loaded = ood_core.load(tmp_path / "mchad.pt2")
    torch.testing.assert_close(loaded.model(x), model(x))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_to_the_guide_name_its_headings():
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.*)$", TEXT, re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", TEXT)
    for readme in DOC.parents[1].glob("plugins/*/README.md"):
        links += re.findall(r"migrating-from-pytorch-ood\.md#([^)]+)\)", readme.read_text())
    assert len(links) >= 20
    assert set(links) <= anchors, sorted(set(links) - anchors)
