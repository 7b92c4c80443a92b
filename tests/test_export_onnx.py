"""The ONNX exporter: every exportable scorer, metadata, calibration, fp16, verification, runtime."""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import ood_core
from ood_core.checkpoint import Checkpoint

pytest.importorskip("onnxruntime")
pytest.importorskip("ood_exporter_onnx")

from ood_exporter_onnx import (  # noqa: E402
    ExportError,
    ExportOptions,
    GPUUnavailableError,
    MissingRuntimeError,
    OnnxModel,
    VerificationError,
    export_onnx,
)
from ood_exporter_onnx import convert as convert_module  # noqa: E402
from ood_exporter_onnx import export as export_module  # noqa: E402
from ood_exporter_onnx.graph import (  # noqa: E402
    duplicate_casts,
    fix_graph,
    is_topologically_sorted,
)
from ood_exporter_onnx.runtime import OnnxRuntimeWarning  # noqa: E402
from ood_runtime import model as runtime_module  # noqa: E402

N_CLASSES, N_DIM, N_IN = 3, 4, 6
TOL = {"rtol": 1e-5, "atol": 1e-5}
# constructor keywords the parametrised test gives losses and scorers that take them
_FILL: dict[str, Any] = {
    "n_classes": N_CLASSES,
    "num_classes": N_CLASSES,
    "n_centers": N_CLASSES,
    "n_dim": N_DIM,
    "n_embedding": N_DIM,
    "n_features": N_DIM,
    "num_features": N_DIM,
    "full_train_loss": 1.0,
}


def _fill(fn: Any) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {name: value for name, value in _FILL.items() if name in params}


class Backbone(nn.Module):
    def __init__(self, out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(N_IN, 16), nn.Tanh(), nn.Linear(16, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Named(Backbone):
    """A backbone returning ``{key: output}``: the checkpoint records which output it makes."""

    def __init__(self, out: int, key: str) -> None:
        super().__init__(out)
        self.key = key

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.key: self.body(x)}


class SegNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, N_CLASSES, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _checkpoint(
    tmp: Path, out: int, name: str, loss: nn.Module | None = None, key: str = "logits"
) -> Checkpoint:
    torch.manual_seed(0)
    model = Backbone(out) if key == "logits" else Named(out, key)
    path = ood_core.save(tmp / f"{name}.pt", model, loss=loss, example_input=torch.randn(4, N_IN))
    return ood_core.load(path)


def _scorer_for(info: Any) -> nn.Module:
    """The scorer registered as ``info``, with state from its loss or fitted on random data."""
    torch.manual_seed(1)
    if info.needs_loss_state:
        owners = [loss for loss in ood_core.list_losses() if loss.scorer == info.name]
        assert owners, f"scorer {info.name!r} needs loss state but no loss names it natural"
        loss = ood_core.create_loss(owners[0].name, **_fill(owners[0].load().__init__))
        with torch.no_grad():  # move the state away from its initial values
            for p in loss.parameters():
                p.add_(0.1 * torch.randn_like(p))
        scorer = loss.scorer()
    else:
        scorer = ood_core.create_scorer(info.name, **_fill(info.load().__init__))
    if info.needs_fit:
        data = torch.randn(64, _width(scorer, info.reads))
        target = torch.arange(64) % N_CLASSES
        params = [p for p in inspect.signature(scorer.fit).parameters if p != "self"]
        scorer.fit(data, target) if len(params) >= 2 else scorer.fit(data)
    return scorer.eval()


def _width(scorer: nn.Module, reads: str) -> int:
    """Width of the model output the scorer accepts (embeddings may be N_DIM or N_CLASSES)."""
    candidates = (N_CLASSES, N_CLASSES + 1) if reads == "logits" else (N_DIM, N_CLASSES)
    for width in candidates:
        try:
            with torch.no_grad():
                scorer(torch.randn(2, width))
        except Exception:  # noqa: BLE001 - wrong width
            continue
        return width
    raise AssertionError(f"{type(scorer).__name__} accepts none of the widths {candidates}")


_LOSS_DISTRIBUTIONS = {i.distribution for i in ood_core.list_losses()}
#: the exportable scorers of ood-core and the loss plugins (built without data); the post-hoc
#: plugins export theirs fitted, in their own tests and in tests/test_export_fit_data.py
EXPORTABLE = [
    s
    for s in ood_core.list_scorers()
    if s.exportable
    and (s.distribution in _LOSS_DISTRIBUTIONS or not s.distribution.startswith("ood-plugin-"))
]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def classifier(tmp: Path) -> Checkpoint:
    return _checkpoint(tmp, N_CLASSES, "classifier", loss=ood_core.create_loss("cross-entropy"))


@pytest.mark.parametrize("info", EXPORTABLE, ids=[s.name for s in EXPORTABLE])
def test_every_exportable_scorer(info: Any, tmp: Path) -> None:
    scorer = _scorer_for(info)
    width = _width(scorer, info.reads)
    ckpt = _checkpoint(tmp, width, f"backbone-{info.name}", key=info.reads)
    out = tmp / f"{info.name}.onnx"
    report = export_onnx(ckpt, scorer, out, rtol=1e-5, atol=1e-5)
    assert report.scorer == info.name
    runner = OnnxModel(out)
    wrapper = convert_module.OODGraph(ckpt.model, scorer, info.reads)
    for batch in (1, 7):
        x = torch.randn(batch, N_IN)
        got = runner.run(x)
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(x)]
        np.testing.assert_allclose(got["output"], ref[0], **TOL)
        np.testing.assert_allclose(got["score"], ref[1], **TOL)
        assert got["prediction"].dtype == np.int64 and got["score"].shape == (batch,)
        np.testing.assert_array_equal(got["prediction"], ref[2])


def test_segmentation_per_pixel(tmp: Path) -> None:
    torch.manual_seed(0)
    path = ood_core.save(tmp / "seg.pt", SegNet(), example_input=torch.randn(2, 2, 5, 6))
    out = tmp / "seg.onnx"
    report = export_onnx(path, "energy", out)
    runner = OnnxModel(out)
    assert runner.metadata["task"] == "segmentation"
    x = torch.randn(3, 2, 5, 6)
    got = runner.run(x)
    assert got["score"].shape == (3, 5, 6) and got["prediction"].shape == (3, 5, 6)
    with torch.no_grad():
        ref = ood_core.load(path).model(x)
    np.testing.assert_allclose(got["output"], ref.numpy(), **TOL)
    energy = ood_core.create_scorer("energy")(ref)
    np.testing.assert_allclose(got["score"], energy.numpy(), **TOL)
    np.testing.assert_array_equal(got["prediction"], ref.argmax(1).numpy())
    assert report.input_shape == [None, 2, 5, 6]


def test_metadata_and_calibrated_threshold(classifier: Checkpoint, tmp: Path) -> None:
    out = tmp / "calibrated.onnx"
    id_inputs = np.random.default_rng(0).normal(size=(101, N_IN)).astype(np.float32)
    report = export_onnx(classifier, "energy", out, calibrate=id_inputs, tpr=0.9)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    for key in (
        "format_version",
        "scorer",
        "loss",
        "plugins",
        "classes",
        "input_shape",
        "score_convention",
        "threshold",
    ):
        assert f"oodx.{key}" in props, key
    assert props["oodx.score_convention"] == "higher-is-ood"
    assert props["oodx.scorer"] == "energy" and props["oodx.loss"] == "cross-entropy"
    assert '"ood-exporter-onnx"' in props["oodx.plugins"]
    runner = OnnxModel(out)
    assert runner.metadata["input_shape"] == [None, N_IN]
    scores = runner.run(id_inputs)["score"]
    # 90% of 101 -> the 91st smallest score; exactly 10 of the ID inputs lie above it
    assert runner.threshold == pytest.approx(np.sort(scores)[90], rel=0, abs=0)
    assert int((scores > runner.threshold).sum()) == 10
    assert report.threshold == runner.threshold and report.calibration_samples == 101
    np.testing.assert_array_equal(runner.is_ood(scores), scores > runner.threshold)
    assert "threshold" in report.summary()


@pytest.fixture(scope="module")
def mchad(tmp: Path) -> tuple[Path, nn.Module]:
    """A checkpoint of an embedding model trained with MCHAD (centres moved off their init)."""
    pytest.importorskip("ood_plugin_mchad")
    loss = ood_core.create_loss("mchad", n_classes=N_CLASSES, n_dim=N_DIM)
    with torch.no_grad():
        loss.centers.params.mul_(3.0)
    path = ood_core.save(
        tmp / "mchad.pt", Backbone(N_DIM), loss=loss, example_input=torch.randn(2, N_IN)
    )
    return path, loss


@pytest.mark.parametrize("scorer", ["mchad", None], ids=["named", "natural"])
def test_natural_scorer_carries_trained_state(
    mchad: tuple[Path, nn.Module], tmp: Path, scorer: str | None
) -> None:
    path, loss = mchad
    out = tmp / f"mchad-{scorer}.onnx"
    report = export_onnx(path, scorer, out)
    assert report.scorer == "mchad" and "trained loss" in report.scorer_source
    runner = OnnxModel(out)
    assert runner.metadata["scorer"] == "mchad"
    z = runner.run(np.zeros((2, N_IN), np.float32))["output"]
    expected = ((torch.from_numpy(z)[:, None] - loss.centers.params[None]) ** 2).sum(-1).amin(1)
    np.testing.assert_allclose(
        runner.run(np.zeros((2, N_IN), np.float32))["score"], expected.detach().numpy(), **TOL
    )


def test_scorer_the_outputs_cannot_feed(mchad: tuple[Path, nn.Module], tmp: Path) -> None:
    out = tmp / "mchad-energy.onnx"
    with pytest.raises(ExportError, match="reads logits but the model outputs embedding"):
        export_onnx(mchad[0], "energy", out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("scorer", "needles"),
    [
        ("mchad", ("reads embedding", "the model outputs logits")),
        ("scone", ("needs state learned by its loss ('scone')", "cross-entropy", "ood_core.save")),
    ],
)
def test_scorer_refused(classifier: Checkpoint, tmp: Path, scorer: str, needles: tuple) -> None:
    if scorer not in {s.name for s in ood_core.list_scorers()}:
        pytest.skip(f"scorer {scorer!r} is not installed")
    out = tmp / "nope.onnx"
    with pytest.raises(ExportError) as info:
        export_onnx(classifier, scorer, out)
    for needle in needles:
        assert needle in str(info.value)
    assert not out.exists()


def test_failed_verification_leaves_no_file(
    classifier: Checkpoint, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = convert_module.to_onnx

    def folding_exporter(wrapper: nn.Module, x: torch.Tensor, opset: int) -> onnx.ModelProto:
        """Like a tracer that folded the scorer: 'score' becomes a constant of the example."""
        proto = real(wrapper, x, opset)
        with torch.no_grad():
            value = wrapper(x)[1].numpy()
        graph = proto.graph
        kept = [n for n in graph.node if "score" not in n.output]
        const = onnx.helper.make_node(
            "Constant", [], ["score"], value=onnx.numpy_helper.from_array(value)
        )
        del graph.node[:]
        graph.node.extend([*kept, const])
        return proto

    monkeypatch.setattr(convert_module, "to_onnx", folding_exporter)
    out = tmp / "folded.onnx"
    with pytest.raises(VerificationError, match="not computed from its input"):
        export_onnx(classifier, "energy", out)
    assert not out.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".folded")]

    def wrong_exporter(wrapper: nn.Module, x: torch.Tensor, opset: int) -> onnx.ModelProto:
        proto = real(wrapper, x, opset)  # a numerically wrong graph: output scaled by 2
        for init in proto.graph.initializer:
            arr = onnx.numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.ndim == 2:
                init.CopyFrom(onnx.numpy_helper.from_array(arr * 2, init.name))
        return proto

    monkeypatch.setattr(convert_module, "to_onnx", wrong_exporter)
    with pytest.raises(VerificationError, match="differs from PyTorch"):
        export_onnx(classifier, "energy", out)
    assert not out.exists()


def test_constant_scorer_fails(classifier: Checkpoint, tmp: Path) -> None:
    class Constant(nn.Module):
        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(logits[:, 0]) + 1.0

    out = tmp / "constant.onnx"
    with pytest.raises(VerificationError, match="does not change when the input changes"):
        export_onnx(classifier, Constant(), out)
    assert not out.exists()


def test_fp16(classifier: Checkpoint, tmp: Path) -> None:
    out = tmp / "half.onnx"
    report = export_onnx(classifier, "msp", out, fp16=True)
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert is_topologically_sorted(proto.graph) and duplicate_casts(proto.graph) == []
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dev = report.fp16_score_deviation
    assert dev is not None and dev["max_abs"] < 5e-3 and dev["prediction_agreement"] >= 0.95
    runner = OnnxModel(out)
    assert runner.metadata["fp16"] == "true"
    assert runner.run(np.ones((5, N_IN), np.float32))["score"].dtype == np.float32


def test_fix_graph_sorts_and_dedupes() -> None:
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    nodes = [
        h.make_node("Add", ["c1", "c2"], ["y"], name="add"),
        h.make_node("Cast", ["x"], ["c1"], name="cast1", to=onnx.TensorProto.FLOAT),
        h.make_node("Cast", ["x"], ["c2"], name="cast2", to=onnx.TensorProto.FLOAT),
    ]
    model = h.make_model(h.make_graph(nodes, "g", [x], [y]), opset_imports=[h.make_opsetid("", 20)])
    assert not is_topologically_sorted(model.graph) and duplicate_casts(model.graph)
    fix_graph(model)
    assert is_topologically_sorted(model.graph) and not duplicate_casts(model.graph)
    assert [n.op_type for n in model.graph.node] == ["Cast", "Add"]
    assert list(model.graph.node[1].input) == ["c1", "c1"]


@pytest.mark.parametrize("opset", [17, 7])
def test_old_opset_rejected(classifier: Checkpoint, tmp: Path, opset: int) -> None:
    with pytest.raises(ExportError, match=f"opset {opset} is too old.*18"):
        export_onnx(classifier, "msp", tmp / "old.onnx", opset=opset)


def test_opset_18(classifier: Checkpoint, tmp: Path) -> None:
    export_onnx(classifier, "max-logit", tmp / "o18.onnx", opset=18)
    proto = onnx.load(str(tmp / "o18.onnx"))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18


def test_cuda_asked_on_cpu_only(classifier: Checkpoint, tmp: Path) -> None:
    out = tmp / "cpu_only.onnx"
    export_onnx(classifier, "msp", out)
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    with pytest.warns(OnnxRuntimeWarning, match="runs on the CPU"):
        runner = OnnxModel(out, device="cuda")
    assert runner.providers == ["CPUExecutionProvider"]
    with pytest.raises(GPUUnavailableError, match="ood-runtime\\[gpu\\]"):
        OnnxModel(out, device="cuda:0", require_gpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnnxModel(out, device="cpu")  # no warning on the CPU


def test_both_runtimes_installed_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "_installed", lambda dist: True)
    with pytest.warns(OnnxRuntimeWarning, match="both onnxruntime and onnxruntime-gpu"):
        runtime_module.check_runtime_install()


def test_missing_onnxruntime(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MissingRuntimeError, match=r"pip install \"ood-runtime\[cpu\]\""):
        OnnxModel(tmp / "whatever.onnx")
    with pytest.raises(MissingRuntimeError, match=r"ood-runtime\[cpu\]"):
        export_onnx(tmp / "whatever.pt", "msp", tmp / "whatever.onnx")


def test_registered_as_exporter(classifier: Checkpoint, tmp: Path) -> None:
    info = ood_core.get_info("exporter", "onnx")
    assert info.suffix == ".onnx" and info.distribution == "ood-exporter-onnx"
    target = ood_core.get_exporter("onnx")
    assert target is export_module.export and target.options == ExportOptions.names()
    out = tmp / "convention.onnx"
    report = target(classifier, out, scorer=None, options={"opset": 18})  # natural scorer
    assert report.scorer == "msp" and report.opset == 18
    assert OnnxModel(out).metadata["scorer"] == "msp"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ck, out: ood_core.get_exporter("onnx")(ck, out, options={"colour": 1}), "'colour'"),
        (lambda ck, out: export_onnx(ck, "msp", out, colour=1), "no option 'colour'"),
        (
            lambda ck, out: export_onnx(ck, "msp", out, options=ExportOptions(), opset=18),
            "not both",
        ),
        (lambda ck, out: export_onnx(ck, 3, out), "scorer must be a registered name"),
        (lambda ck, out: export_onnx(ck, "msp", out, tpr=0.0), "tpr must be a fraction"),
        (lambda ck, out: export_onnx(ck, "msp", out, tpr=True), "tpr must be a fraction"),
        (lambda ck, out: export_onnx(ck, "msp", out, batch_sizes=(3, 3)), "two different"),
        (lambda ck, out: export_onnx(ck, "msp", out, atol=-1.0), "atol must be a number >= 0"),
        (lambda ck, out: export_onnx(ck, "msp", out, opset=18.0), "opset must be an integer"),
        (lambda ck, out: export_onnx(ck, "msp", out, opset=999), "newer than this onnx"),
    ],
)
def test_bad_options_write_nothing(
    classifier: Checkpoint, tmp: Path, call: Any, match: str
) -> None:
    out = tmp / "bad-options.onnx"
    with pytest.raises(ExportError, match=match):
        call(classifier, out)
    assert not out.exists()


def test_options_are_one_frozen_record() -> None:
    options = ExportOptions(batch_sizes=[2, 5], input_shape=[3, 4])
    assert options.batch_sizes == (2, 5) and options.input_shape == (3, 4)
    with pytest.raises(AttributeError):
        options.opset = 18  # type: ignore[misc]


def test_plugin_module_is_light() -> None:
    import subprocess

    code = (
        "import sys, ood_exporter_onnx.plugin, ood_exporter_onnx;"
        "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
