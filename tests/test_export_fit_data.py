"""``oodx export CKPT --scorer NAME --fit-data X.npy [--fit-labels Y.npy]`` end to end.

Every registered fitted, exportable scorer the model's outputs (logits, features) can feed goes
through the real command line in a subprocess: one interpreter calls the ``oodx`` entry point
once per scorer (imports paid once) and reports exit codes and output as JSON; the ONNX scores
of each graph must equal those of the same scorer fitted in-process on the original model's
outputs (1e-4 relative). Also: the errors of ``fit_scorer``/the CLI, and the exported
``prediction`` when the scorer has no class decision.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("ood_exporter_onnx")

from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

import ood_core  # noqa: E402
from ood_core.resolve import ResolveError, fit_scorer  # noqa: E402

IN, WIDTH, CLASSES, N = 6, 10, 3, 240
#: extra constructor keywords (as --scorer-arg) a scorer needs for these small sizes
ARGS = {"vim": {"d": 4}, "knn": {"k": 5}, "nnguide": {"k": 5}, "dice": {"p": 0.5}}
#: one interpreter, the ``oodx`` entry point called once per run; argv[1]: JSON {runs, results}
DRIVER = """
import contextlib, io, json, sys
from oodx.main import main

spec = json.load(open(sys.argv[1]))
results = {}
for name, argv in spec["runs"].items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    results[name] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
with open(spec["results"], "w") as f:
    json.dump(results, f)
"""


class Net(nn.Module):
    """Inputs (B, 6) -> {logits (B, 3), features (B, 10)}; the head ``fc`` is one Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(IN, WIDTH)
        self.fc = nn.Linear(WIDTH, CLASSES)

    def forward(self, x):
        f = torch.tanh(self.body(x)) * 3
        return {"logits": self.fc(f), "features": f}


class NoHead(Net):
    """Logits that are not a linear map of the features: no head to take from the checkpoint."""

    def forward(self, x):
        f = torch.tanh(self.body(x)) * 3
        return {"logits": self.fc(f).tanh(), "features": f}


class FeaturesOnly(Net):
    def forward(self, x):
        return {"features": torch.tanh(self.body(x)) * 3}


def fitted_names() -> list[str]:
    usable = {"logits", "features"}
    return sorted(
        i.name
        for i in ood_core.list_scorers()
        if i.needs_fit
        and i.exportable
        and set((i.reads,) if isinstance(i.reads, str) else i.reads) <= usable
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    torch.manual_seed(0)
    model = Net().eval()
    g = np.random.default_rng(0)
    centres = g.normal(size=(CLASSES, IN)) * 2
    y = np.arange(N) % CLASSES
    x = (centres[y] + g.normal(size=(N, IN))).astype(np.float32)
    test = (g.normal(size=(40, IN)) * 2.5).astype(np.float32)
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y.astype(np.int64))
    ckpt = tmp / "model.pt2"
    ood_core.save(ckpt, model, example_input=torch.from_numpy(x[:2]))
    return {"tmp": tmp, "model": model, "x": x, "y": y, "test": test, "ckpt": ckpt}


def reference_scores(setup, name: str) -> np.ndarray:
    """Scores on the test inputs of ``name`` fitted in-process on the original model's outputs."""
    model, kwargs = setup["model"], dict(ARGS.get(name, {}))
    info = ood_core.get_info("scorer", name)
    if "head" in inspect.signature(info.load()).parameters:
        kwargs["head"] = model.fc
    scorer = ood_core.create_scorer(name, **kwargs)
    with torch.no_grad():
        out = model(torch.from_numpy(setup["x"]))
        scorer.fit(out[info.reads], torch.from_numpy(setup["y"]))
        return scorer.eval()(model(torch.from_numpy(setup["test"]))[info.reads]).numpy()


def assert_scores_equal(got: np.ndarray, ref: np.ndarray) -> None:
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * scale)


def test_the_fitted_scorers_are_covered() -> None:
    names = fitted_names()
    issue = {"mahalanobis", "multi-mahalanobis", "rmd", "gmm", "knn", "nnguide", "vim", "she"}
    issue |= {"nci", "fdbd", "pnml", "kl-matching", "temperature-scaling", "openmax"}
    assert issue <= set(names), sorted(issue - set(names))


def export_argv(setup, name: str) -> list[str]:
    """``oodx export`` arguments fitting ``name`` on x.npy/y.npy into ``<name>.onnx``."""
    tmp = setup["tmp"]
    args = [a for k, v in ARGS.get(name, {}).items() for a in ("--scorer-arg", f"{k}={v}")]
    return [
        "export", str(setup["ckpt"]), "--scorer", name, "--fit-data", str(tmp / "x.npy"),
        "--fit-labels", str(tmp / "y.npy"), "-o", str(tmp / f"{name}.onnx"),
        "--batch-sizes", "1,3", *args,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cli_runs(setup) -> dict[str, dict]:
    """Every fitted scorer exported by the CLI in one subprocess: name -> code, stdout, stderr."""
    spec = setup["tmp"] / "runs.json"
    results = setup["tmp"] / "results.json"
    runs = {name: export_argv(setup, name) for name in fitted_names()}
    spec.write_text(json.dumps({"runs": runs, "results": str(results)}))
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(spec)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(results.read_text())


@pytest.mark.parametrize("name", fitted_names())
def test_cli_fit_export_matches_in_process(setup, cli_runs, name: str) -> None:
    run = cli_runs[name]
    assert run["code"] == 0, run["stderr"] + run["stdout"]
    assert f"fitted on {N} samples (labels given" in run["stdout"]
    path = setup["tmp"] / f"{name}.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, pred = session.run(["score", "prediction"], {"input": setup["test"]})
    assert_scores_equal(score, reference_scores(setup, name))
    one, _ = session.run(["score", "prediction"], {"input": setup["test"][:1]})
    assert_scores_equal(one, score[:1])  # the graph is not tied to the batch size
    with torch.no_grad():
        logits = setup["model"](torch.from_numpy(setup["test"]))["logits"]
    if name == "vim":  # its head, taken from the checkpoint: the model's own decision
        np.testing.assert_array_equal(pred, logits.argmax(1).numpy())


def test_fit_scorer_streams_batches_like_one_tensor(setup) -> None:
    """``fit_scorer`` (what the CLI calls) over batches equals a fit on all outputs at once."""
    ckpt = ood_core.load(setup["ckpt"])
    x, y = setup["x"], setup["y"]
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, N, 100)]
    picked = fit_scorer(ckpt, "vim", batches, **ARGS["vim"])
    with torch.no_grad():
        got = picked.scorer.eval()(ckpt.model(torch.from_numpy(setup["test"]))["features"])
    assert_scores_equal(got.numpy(), reference_scores(setup, "vim"))


def test_labels_default_to_the_models_predictions(setup) -> None:
    ckpt = ood_core.load(setup["ckpt"])
    picked = fit_scorer(ckpt, "mahalanobis", [setup["x"]])
    assert "the model's predictions" in picked.source
    with torch.no_grad():
        out = setup["model"](torch.from_numpy(setup["x"]))
    ref = ood_core.create_scorer("mahalanobis").fit(out["features"], out["logits"].argmax(1))
    torch.testing.assert_close(picked.scorer.centres, ref.centres)
    torch.testing.assert_close(picked.scorer.classes, ref.classes)


def test_a_head_the_checkpoint_lacks_is_refused_with_the_python_way(tmp_path) -> None:
    path = tmp_path / "nohead.pt2"
    ood_core.save(path, NoHead().eval(), example_input=torch.randn(2, IN))
    with pytest.raises(ResolveError, match=r"export_onnx\(ckpt, scorer=create_scorer\('vim'"):
        fit_scorer(ood_core.load(path), "vim", [torch.randn(50, IN)], d=4)


def test_a_scorer_needing_labels_without_logits_or_labels_is_refused(tmp_path) -> None:
    path = tmp_path / "features.pt2"
    ood_core.save(path, FeaturesOnly().eval(), example_input=torch.randn(2, IN))
    with pytest.raises(ResolveError, match="--fit-labels"):
        fit_scorer(ood_core.load(path), "mahalanobis", [torch.randn(50, IN)])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fit-labels", "{y}"], "--fit-labels needs --fit-data"),
        (["--fit-data", "{x}"], "--fit-data needs --scorer"),
        (["--scorer", "energy", "--fit-data", "{x}"], "is not fitted"),
        (["--scorer", "mahalanobis", "--fit-data", "{x}", "--fit-labels", "{bad}"], "one per"),
        (["--scorer", "mahalanobis", "--fit-data", "{nan}"], "NaN"),
    ],
)
def test_cli_refuses_bad_fit_options(setup, args, message) -> None:
    from oodx.commands.export import export

    tmp = setup["tmp"]
    np.save(tmp / "bad.npy", np.zeros(3, dtype=np.int64))
    nan = setup["x"].copy()
    nan[5, 2] = np.nan
    np.save(tmp / "nan.npy", nan)
    paths = {k: str(tmp / f"{k}.npy") for k in ("x", "y", "bad", "nan")}
    argv = [str(setup["ckpt"]), "-o", str(tmp / "never.onnx"), *(a.format(**paths) for a in args)]
    result = CliRunner().invoke(export, argv)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert not (tmp / "never.onnx").exists()


def test_fit_data_folder_of_images_is_read_like_oodx_score(tmp_path) -> None:
    pil = pytest.importorskip("PIL.Image")
    from ood_runtime.inputs import load_inputs
    from oodx.commands.export_run import fit_inputs

    folder = tmp_path / "images"
    folder.mkdir()
    g = np.random.default_rng(1)
    for i in range(3):
        pil.fromarray(g.integers(0, 255, (12, 9, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    ckpt = type("C", (), {"input_shape": [None, 3, 8, 8]})()
    plain, _ = fit_inputs(ckpt, (folder, None), {})
    np.testing.assert_array_equal(plain, load_inputs(folder, [None, 3, 8, 8])[0])
    normed, labels = fit_inputs(ckpt, (folder, None), {"mean": "0.5,0.4,0.3", "std": "0.2,0.2,0.1"})
    mean = np.array([0.5, 0.4, 0.3], dtype=np.float32)[None, :, None, None]
    std = np.array([0.2, 0.2, 0.1], dtype=np.float32)[None, :, None, None]
    np.testing.assert_allclose(normed, (plain - mean) / std, rtol=1e-6)
    assert labels is None


# -- prediction: a class decision only where there is one ----------------------------------


def test_predicts_says_whether_predict_is_a_class_decision() -> None:
    from ood_core.testing.posthoc import cluster_head

    assert ood_core.create_scorer("energy").predicts
    assert ood_core.create_scorer("mahalanobis").predicts  # nearest class mean
    assert not ood_core.create_scorer("knn").predicts  # argmax of features means nothing
    assert ood_core.create_scorer("knn", head=cluster_head(4, 3)).predicts
    assert not ood_core.create_scorer("objectosphere").predicts


@pytest.mark.parametrize(
    "model_cls, head, expected",
    [(Net, False, "logits"), (Net, True, "scorer"), (FeaturesOnly, False, "none")],
)
def test_graph_prediction_source(model_cls, head, expected) -> None:
    from ood_exporter_onnx.convert import OODGraph, reference

    torch.manual_seed(0)
    model = model_cls().eval()
    x = torch.randn(30, IN)
    scorer = ood_core.create_scorer("knn", k=3, head=model.fc if head else None)
    scorer.fit(model(x)["features"])
    graph = OODGraph(model, scorer.eval(), "features").eval()
    _, score, pred = reference(graph, x, "knn")
    if expected == "none":
        assert (pred == -1).all() and pred.shape == score.shape
        assert graph.prediction_source().startswith("-1")
    else:
        torch.testing.assert_close(pred, model.fc(model(x)["features"]).argmax(1))
        assert (graph.prediction_source() == "scorer.predict") == (expected == "scorer")


def test_features_only_model_exports_minus_one_predictions(tmp_path) -> None:
    from ood_exporter_onnx import export_onnx

    torch.manual_seed(0)
    model = FeaturesOnly().eval()
    x = torch.randn(40, IN)
    path = tmp_path / "f.pt2"
    ood_core.save(path, model, example_input=x[:2])
    scorer = ood_core.create_scorer("knn", k=3).fit(model(x)["features"])
    export_onnx(path, scorer, tmp_path / "f.onnx", batch_sizes=(1, 3))
    session = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    score, pred = session.run(["score", "prediction"], {"input": x[:5].numpy()})
    np.testing.assert_array_equal(pred, -np.ones(5, dtype=np.int64))
    np.testing.assert_allclose(score, scorer(model(x[:5])["features"]).detach().numpy(), rtol=1e-4)


def test_scorers_listing_shows_fit_yes_for_fitted_scorers() -> None:
    from oodx.commands.listing import scorers

    result = CliRunner().invoke(scorers, [])
    assert result.exit_code == 0, result.output
    header, _, *rows = result.output.splitlines()
    at = header.index(" FIT ") + 1
    fit = {row.split()[0]: row[at : at + 3].strip() for row in rows}
    assert {i.name: fit[i.name] for i in ood_core.list_scorers()} == {
        i.name: "yes" if i.needs_fit else "no" for i in ood_core.list_scorers()
    }
    assert fit["mahalanobis"] == "yes" and fit["energy"] == "no"
