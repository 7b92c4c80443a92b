"""Raw-image graphs and the in-graph decision: uint8 in, normalisation (and resize) as ONNX ops,
verified against PyTorch on the preprocessed tensor; ``is_ood`` NaN-safe and equal to
``OnnxModel.is_ood``; ``oodx.preprocess``/``oodx.extra``/doc string; ``oodx score`` on images."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ood_core

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from click.testing import CliRunner  # noqa: E402

from ood_exporter_onnx import ExportError, export_onnx  # noqa: E402
from ood_exporter_onnx.preprocess import Preprocess, Preprocessed  # noqa: E402
from ood_runtime import OnnxModel, flag_ood  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 12


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 4),
    ).eval()


def _run_subgraph(path: Path, inputs: list[str], outputs: list[str], feed: dict) -> list:
    import onnxruntime as ort

    out = path.with_suffix(".sub.onnx")
    onnx.utils.extract_model(str(path), str(out), inputs, outputs, check_model=False)
    return ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(outputs, feed)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("raw")
    net = _net()
    ckpt = ood_core.save(
        tmp / "m.pt",
        net,
        loss=ood_core.create_loss("cross-entropy"),
        example_input=torch.randn(2, 3, SIZE, SIZE),
        extra={"run": "r17", "dataset": ["a", "b"]},
    )
    cal = np.random.default_rng(0).integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8)
    np.save(tmp / "cal.npy", cal)
    report = export_onnx(
        ckpt,
        "energy",
        tmp / "raw.onnx",
        input_format="uint8-nhwc",
        mean=MEAN,
        std=STD,
        calibrate=cal,
        tpr=0.9,
    )
    return {"tmp": tmp, "net": net, "ckpt": ckpt, "onnx": tmp / "raw.onnx", "report": report}


def test_raw_graph_equals_pytorch_on_normalised_input(raw: dict) -> None:
    model = OnnxModel(raw["onnx"])
    assert model.input_shape == ["batch", SIZE, SIZE, 3] and model.input_dtype == np.uint8
    assert model.output_names == ["output", "score", "prediction", "is_ood"]
    x = np.random.default_rng(5).integers(0, 256, (9, SIZE, SIZE, 3), dtype=np.uint8)
    got = model.run(x)
    normalised = (
        torch.from_numpy(x).float().permute(0, 3, 1, 2) / 255 - torch.tensor(MEAN)[:, None, None]
    ) / torch.tensor(STD)[:, None, None]
    scorer = ood_core.create_scorer("energy")
    with torch.no_grad():
        logits = raw["net"](normalised)
        score = scorer(logits).numpy()
    np.testing.assert_allclose(got["output"], logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["score"], score, rtol=1e-4, atol=1e-5)
    assert np.array_equal(got["is_ood"], model.is_ood(got["score"]))


def test_is_ood_in_graph_is_nan_safe(raw: dict) -> None:
    model = OnnxModel(raw["onnx"])
    t = np.float32(model.threshold)
    probe = np.array(
        [np.nan, np.inf, -np.inf, t, np.nextafter(t, np.float32(1e9)), t - 1], np.float32
    )
    (flags,) = _run_subgraph(raw["onnx"], ["score"], ["is_ood"], {"score": probe})
    assert flags.tolist() == [True, True, True, False, True, False]
    assert np.array_equal(flags, flag_ood(probe, model.threshold))


def test_uint8_graph_refuses_float_input(raw: dict) -> None:
    model = OnnxModel(raw["onnx"])
    with pytest.raises(ValueError, match="uint8"):
        model.run(np.full((1, SIZE, SIZE, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="uint8"):
        model.run(np.full((1, SIZE, SIZE, 3), 300, np.int64))


def test_metadata_preprocess_extra_doc(raw: dict) -> None:
    from oodx.commands.export import inspect

    meta = OnnxModel(raw["onnx"]).metadata
    pre = meta["preprocess"]
    assert pre["layout"] == "NHWC" and pre["input_size"] == [SIZE, SIZE] and pre["resize"] is None
    assert pre["mean"] == list(MEAN) and pre["std"] == list(STD) and pre["dtype"] == "uint8"
    assert meta["extra"] == {"run": "r17", "dataset": ["a", "b"]}
    assert meta["threshold_tpr"] == 0.9
    result = CliRunner().invoke(inspect, [str(raw["onnx"]), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["oodx"]["extra"] == meta["extra"] and info["oodx"]["preprocess"] == pre
    doc = info["doc_string"]
    assert doc.endswith(".") and ". " not in doc  # one sentence
    for needle in ("energy", "uint8[batch, 12, 12, 3]", "`score`", "`is_ood`"):
        assert needle in doc, doc
    text = CliRunner().invoke(inspect, [str(raw["onnx"])]).output
    assert "calibrated for TPR 90%" in text and "preprocessing in the graph" in text


def test_resize_graph_and_preprocessing_subgraph(raw: dict) -> None:
    out = raw["tmp"] / "resize.onnx"
    export_onnx(
        raw["ckpt"], "msp", out, input_format="uint8-nchw", mean=0.5, std=0.25, resize=(SIZE, SIZE)
    )
    model = OnnxModel(out)
    assert model.input_shape == ["batch", 3, "height", "width"]
    spec = Preprocess.build("uint8-nchw", 0.5, 0.25, (SIZE, SIZE), (2, 3, SIZE, SIZE))
    for h, w in ((31, 17), (SIZE, SIZE), (5, 40)):
        x = np.random.default_rng(h).integers(0, 256, (3, 3, h, w), dtype=np.uint8)
        (pre,) = _run_subgraph(out, ["input"], ["oodx_pre/normalised"], {"input": x})
        ref = Preprocessed(spec, nn.Identity()).normalise(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(pre, ref, rtol=1e-5, atol=1e-5)
        assert model.run(x)["score"].shape == (3,)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mean": MEAN}, "input_format"),
        ({"input_format": "uint8-nhwc", "std": (1, 2)}, "3 finite number"),
        ({"input_format": "uint8-nhwc", "std": (1, 0, 1)}, "std must be > 0"),
        ({"input_format": "uint8-nhwc", "resize": (8, 8)}, "model's input size"),
        ({"input_format": "rgb"}, "input_format must be one of"),
        ({"input_format": "uint8-nhwc", "resize": "8"}, "two positive sizes"),
    ],
)
def test_bad_preprocess_options(raw: dict, options: dict, match: str) -> None:
    with pytest.raises(ExportError, match=match):
        export_onnx(raw["ckpt"], "msp", raw["tmp"] / "bad.onnx", **options)
    assert not (raw["tmp"] / "bad.onnx").exists()


def test_cli_export_and_score_raw_images(raw: dict) -> None:
    from PIL import Image

    from oodx.commands.export import export, score

    tmp = raw["tmp"]
    out = tmp / "cli.onnx"
    args = [
        str(raw["ckpt"]),
        "-o",
        str(out),
        "--scorer",
        "energy",
        "--input-format",
        "uint8-nhwc",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
        "--resize",
        f"{SIZE},{SIZE}",
    ]
    result = CliRunner().invoke(export, args)
    assert result.exit_code == 0, result.output
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i, size in enumerate([(30, 20), (20, 30), (30, 20)]):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            images / f"{i}.png"
        )
    rows = {}
    for mode in ("stretch", "center-crop", "pad"):
        result = CliRunner().invoke(score, [str(out), str(images), "--resize-mode", mode])
        assert result.exit_code == 0, result.output
        rows[mode] = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["input"] for r in rows[mode]] == ["0.png", "1.png", "2.png"]
    model = OnnxModel(out)
    decoded = np.asarray(Image.open(images / "1.png").convert("RGB"))[None]
    expected = model.run(decoded)["score"][0]  # decode only: the graph resizes
    assert float(rows["stretch"][1]["score"]) == pytest.approx(float(expected), rel=1e-6)
    assert rows["stretch"][0]["score"] != rows["center-crop"][0]["score"]
