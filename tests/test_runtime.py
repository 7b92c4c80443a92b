"""ood_runtime without torch: metrics equal ood_core's and sklearn's, the protobuf reader
agrees with onnx and refuses garbage, inputs honour the aspect-ratio policy, imports stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ood_core.metrics import OODMetrics
from ood_runtime.errors import InputError
from ood_runtime.inputs import fit_aspect, load_inputs
from ood_runtime.metrics import ood_metrics, threshold_for_id_rate
from ood_runtime.onnxfile import describe_onnx

onnx = pytest.importorskip("onnx")

_scores = arrays(
    np.float32,
    st.integers(1, 40),
    elements=st.floats(-4, 4, width=32).map(lambda v: round(v, 1)),  # many ties
)


@settings(max_examples=60, deadline=None)
@given(s_id=_scores, s_ood=_scores, tpr=st.sampled_from([0.95, 0.5, 0.8, 1.0]))
def test_metrics_equal_ood_core(s_id: np.ndarray, s_ood: np.ndarray, tpr: float) -> None:
    ref = OODMetrics(fpr_at=tpr)
    ref.update(s_id, np.zeros(s_id.size, np.int64))
    ref.update(s_ood, -np.ones(s_ood.size, np.int64))
    assert ood_metrics(s_id, s_ood, tpr=tpr) == ref.compute()  # bit for bit


def test_metrics_match_sklearn_and_accuracy() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    s_id, s_ood = rng.normal(0, 1, 500), rng.normal(1, 1, 300)
    y = np.r_[np.zeros(500), np.ones(300)]
    s = np.r_[s_id, s_ood]
    got = ood_metrics(s_id, s_ood, id_labels=np.arange(500) % 3, id_predictions=np.zeros(500))
    assert got["AUROC"] == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert got["AUPR-OUT"] == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    assert got["AUPR-IN"] == pytest.approx(metrics.average_precision_score(1 - y, -s), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
    assert got["FPR95TPR"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    assert got["ACC"] == pytest.approx(167 / 500)


@pytest.mark.parametrize(
    ("s_id", "s_ood", "match"),
    [([0.1, np.nan], [1.0], "NaN"), ([], [1.0], "at least one"), ([1, 2], [1.0], "floating")],
)
def test_metrics_refuse_bad_scores(s_id: list, s_ood: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ood_metrics(np.asarray(s_id), np.asarray(s_ood))


def test_threshold_equals_ood_core() -> None:
    from ood_core.metrics import threshold_for_id_rate as ref

    s = np.random.default_rng(1).normal(size=101)
    for keep in (0.07, 0.5, 0.95, 1.0):
        assert threshold_for_id_rate(s, keep) == ref(s, keep)


def _toy_onnx(path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.UINT8, ["batch", 4, 4, 3])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 4, 4, 3])
    w = onnx.numpy_helper.from_array(np.ones(1, np.float32), "w")
    nodes = [
        helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "w"], ["score"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 20)]
    )
    model.doc_string = "a toy"
    onnx.helper.set_model_props(model, {"oodx.threshold": "0.5", "oodx.extra": '{"a": [1]}'})
    onnx.save(model, str(path))


def test_describe_onnx_agrees_with_onnx(tmp_path: Path) -> None:
    from ood_runtime.metadata import read_metadata

    path = tmp_path / "toy.onnx"
    _toy_onnx(path)
    info = describe_onnx(path)
    assert info["inputs"] == [{"name": "input", "dtype": "uint8", "shape": ["batch", 4, 4, 3]}]
    assert [o["name"] for o in info["outputs"]] == ["score"]
    assert info["nodes"] == 2 and info["opsets"] == {"ai.onnx": 20}
    assert info["doc_string"] == "a toy"
    assert read_metadata(path) == {"threshold": 0.5, "extra": {"a": [1]}}


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_describe_onnx_refuses_garbage(tmp_path_factory, data) -> None:
    """Truncated, bit-flipped and random files are a ValueError, never another exception."""
    path = tmp_path_factory.mktemp("garbage") / "m.onnx"
    if not hasattr(test_describe_onnx_refuses_garbage, "good"):
        good = tmp_path_factory.mktemp("good") / "toy.onnx"
        _toy_onnx(good)
        test_describe_onnx_refuses_garbage.good = good.read_bytes()
    good = test_describe_onnx_refuses_garbage.good
    kind = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        blob = good[: data.draw(st.integers(0, len(good) - 1))]
    elif kind == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        blob = good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1 :]
    else:
        blob = data.draw(st.binary(max_size=200))
    path.write_bytes(blob)
    try:
        describe_onnx(path)
    except ValueError:
        pass


def _image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    from PIL import Image

    Image.new("RGB", size, color).save(path)


@pytest.mark.parametrize(
    ("mode", "expected"), [("stretch", (40, 20)), ("center-crop", (20, 20)), ("pad", (40, 40))]
)
def test_fit_aspect(mode: str, expected: tuple[int, int]) -> None:
    from PIL import Image

    img = Image.new("RGB", (40, 20), (200, 10, 10))
    out = fit_aspect(img, (8, 8), mode, Image)
    assert out.size == expected
    if mode == "pad":  # black bands above and below, the image in the middle
        arr = np.asarray(out)
        assert arr[0].max() == 0 and tuple(arr[20, 20]) == (200, 10, 10)


def test_raw_images_decoded_only_for_a_resizing_graph(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", (30, 20), (1, 2, 3))
    _image(tmp_path / "b.png", (16, 16), (4, 5, 6))
    pre = {"channels": 3, "layout": "NHWC", "input_size": None, "resize": {"size": [8, 8]}}
    data, names = load_inputs(tmp_path, ["batch", "height", "width", 3], preprocess=pre)
    assert names == ["a.png", "b.png"] and isinstance(data, list)
    assert data[0].shape == (20, 30, 3) and data[0].dtype == np.uint8
    assert tuple(data[1][0, 0]) == (4, 5, 6)
    padded, _ = load_inputs(tmp_path, [None, None, None, 3], preprocess=pre, resize_mode="pad")
    assert [d.shape for d in padded] == [(30, 30, 3), (16, 16, 3)]  # square, not resampled
    fixed = {"channels": 3, "layout": "NCHW", "input_size": [8, 8], "resize": None}
    arr, _ = load_inputs(tmp_path, ["batch", 3, 8, 8], preprocess=fixed)
    assert arr.shape == (2, 3, 8, 8) and arr.dtype == np.uint8


def test_input_mistakes_are_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 5), np.float32))
    with pytest.raises(InputError, match="shape"):
        load_inputs(tmp_path / "x.npy", ["batch", 3, 8, 8])
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="no images"):
        load_inputs(tmp_path / "d", ["batch", 3, 8, 8])
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(InputError, match="ood-runtime\\[images\\]"):
        load_inputs(tmp_path / "d", ["batch", 3, 8, 8])


def test_import_is_torch_free() -> None:
    code = (
        "import sys, ood_runtime\n"
        "from ood_runtime import OnnxModel, ood_metrics, load_inputs, read_metadata\n"
        "bad = [m for m in ('torch', 'onnx', 'ood_core') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
