"""ONNX export: PReLU rewriting, metadata, parity against PyTorch, int8, and the export CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mobileface.errors import ModelFileError
from mobileface.export.graph import decompose_prelu, graph_report
from mobileface.export.onnx import (
    FP32_MIN_COSINE,
    export_onnx,
    load_for_export,
    parity_check,
    read_metadata,
)
from mobileface.models import create_model
from mobileface.runtime import OnnxEmbedder, cosine_similarity
from mobileface.runtime.embedder import open_session
from models_helpers import assert_outputs_match, randomize_and_calibrate

REPO = Path(__file__).resolve().parents[1]
INT8_MIN_COSINE = 0.9
"""Worst cosine between int8 and PyTorch embeddings of a *random-init* model on face-like
inputs (measured about 0.95; trained models do far better, see test_verify's peer test)."""


@pytest.fixture(scope="module")
def model():
    return randomize_and_calibrate(create_model("mobilefacenet"), seed=2)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    return {
        "decompose": export_onnx(model, folder / "fp32.onnx"),
        "keep": export_onnx(model, folder / "kept.onnx", prelu="keep"),
    }


def _run(proto_or_path: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from mobileface.runtime.embedder import session_options

    if isinstance(proto_or_path, onnx.ModelProto):
        session = ort.InferenceSession(
            proto_or_path.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
        )
    else:
        session = open_session(proto_or_path)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32)


def test_prelu_forms_are_exact(exported, inputs) -> None:
    kept = onnx.load(str(exported["keep"]))
    assert graph_report(kept)["prelu_ops"] == 33
    reference = _run(kept, inputs)
    for form, ops in (("fp32", {"Conv": 83}), ("int8", {"Conv": 83}), ("exact", {"Conv": 116})):
        proto = onnx.load(str(exported["keep"]))
        counts = decompose_prelu(proto, form)
        assert counts == {form: 33}
        report = graph_report(proto)
        assert report["prelu_ops"] == 0 and report["ops"]["Conv"] == ops["Conv"]
        assert report["standard_ops_only"]
        assert_outputs_match(_run(proto, inputs), reference)


def test_prelu_slopes_at_or_above_one_fall_back_to_the_exact_form(inputs, tmp_path) -> None:
    model = randomize_and_calibrate(create_model("mobilefacenet_s"), seed=3)
    prelus = [m for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    prelus[0].weight.data[0] = 1.0  # a slope of 1: the fp32 and int8 forms do not apply
    prelus[1].weight.data[:] = 0.1  # one slope for all channels (still per-channel shaped)
    scalar = torch.nn.PReLU(1)
    scalar.weight.data[:] = 0.2
    model.stem[1].act = scalar  # a single-slope PReLU is a LeakyRelu
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs)).numpy()
    for form in ("fp32", "int8"):
        path = export_onnx(model, tmp_path / f"{form}.onnx", prelu=form)
        proto = onnx.load(str(path))
        assert graph_report(proto)["ops"].get("LeakyRelu") == 1
        assert_outputs_match(_run(path, inputs), expected)
    kept = export_onnx(model, tmp_path / "kept.onnx", prelu="keep")
    counts = decompose_prelu(onnx.load(str(kept)), "int8")
    assert counts["exact"] == 1 and counts["leaky"] == 1


def test_shared_slope_prelu_fuses_into_the_convolutions(inputs, tmp_path) -> None:
    model = randomize_and_calibrate(create_model("mobilefacenet_prelu_shared"), seed=1)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs)).numpy()
    path = export_onnx(model, tmp_path / "shared.onnx")
    ops = graph_report(onnx.load(str(path)))["ops"]
    assert ops["LeakyRelu"] == 33 and ops["Conv"] == 50 and "PRelu" not in ops
    assert_outputs_match(_run(path, inputs), expected)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimised = [n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    assert "LeakyRelu" not in optimised and optimised.count("FusedConv") == 33


def test_gdconv_is_a_plain_depthwise_conv(exported) -> None:
    report = graph_report(onnx.load(str(exported["decompose"])))
    assert report["gdconv"] == [
        {"name": report["gdconv"][0]["name"], "channels": 512, "kernel": [7, 7]}
    ]
    assert set(report["ops"]) == {"Add", "Conv", "Flatten", "Relu"}
    assert report["opset"] == 17


def test_export_parity_and_metadata(model, exported) -> None:
    for path in exported.values():
        parity = parity_check(model, path)
        assert parity.ok(FP32_MIN_COSINE), parity
        assert parity.max_abs_diff < 1e-3 and parity.n == 8
    meta = read_metadata(exported["decompose"])
    assert meta["architecture"] == "mobilefacenet"
    assert meta["input_size"] == [112, 112] and meta["embedding_size"] == 128
    assert (meta["mean"], meta["std"], meta["bgr"]) == (127.5, 128.0, False)
    assert meta["prelu"] == "decomposed" and read_metadata(exported["keep"])["prelu"] == "kept"
    session = open_session(exported["decompose"])
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch


def test_other_opsets_and_architectures_export(tmp_path: Path) -> None:
    model = randomize_and_calibrate(create_model("mobilefacenet_112x96"), seed=4)
    path = export_onnx(model, tmp_path / "m.onnx", opset=13)
    assert graph_report(onnx.load(str(path)))["opset"] == 13
    assert parity_check(model, path).ok()
    assert OnnxEmbedder(path).input_size == (112, 96)


def test_load_for_export(model, tmp_path: Path) -> None:
    from mobileface.models.checkpoint import save_model_checkpoint

    zoo, source, thresholds = load_for_export("mobilefacenet_s")
    assert source == "random init" and thresholds == {}
    ckpt = save_model_checkpoint(model, tmp_path / "best.pt")
    (tmp_path / "best.json").write_text(json.dumps({"thresholds": {"far_1e-3": 0.3}}))
    loaded, source, thresholds = load_for_export(ckpt)
    assert source == "best.pt" and thresholds == {"far_1e-3": 0.3}
    with pytest.raises(ModelFileError, match="neither a training checkpoint"):
        load_for_export("not_a_model")


def _face_folder(root: Path, n: int = 24) -> Path:
    """Face-like crops (smooth blobs on noise), nested, with a stray non-image file."""
    from PIL import Image

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:112, :112]
    for i in range(n):
        blob = np.exp(-(((yy - 56) / 40.0) ** 2 + ((xx - 56) / 32.0) ** 2))
        img = (
            60 + 150 * blob[..., None] * rng.uniform(0.6, 1.0, 3) + rng.normal(0, 12, (112, 112, 3))
        )
        folder = root / f"id{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.slow
def test_int8_quantization(model, exported, tmp_path: Path) -> None:
    from mobileface.export.quantize import find_images, load_crops, quantize_onnx

    calib = _face_folder(tmp_path / "calib")
    assert len(find_images(calib)) == 24
    kept = exported["keep"]
    out = tmp_path / "int8.onnx"
    report = quantize_onnx(kept, out, calib, keep_float=["first", "last"], max_images=16)
    assert report.calibration_images == 16 and len(report.float_nodes) == 2
    proto = onnx.load(str(out))
    ops = graph_report(proto)["ops"]
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0 and "PRelu" not in ops
    # Per-channel weights: DequantizeLinear of a 4-D weight carries an axis.
    axes = [
        a.i
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear"
        for a in n.attribute
        if a.name == "axis"
    ]
    assert axes and set(axes) == {0}
    # The layers kept in float read float weights directly.
    names = {n.name: n for n in proto.graph.node}
    for name in report.float_nodes:
        weight = names[name].input[1]
        assert any(t.name == weight for t in proto.graph.initializer)
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["quantization"]["float_nodes"] == report.float_nodes
    assert meta["input_size"] == [112, 112]
    crops, _ = load_crops(find_images(calib), (112, 112), limit=8, seed=9)
    int8 = OnnxEmbedder(out).embed(crops)
    fp32 = OnnxEmbedder(exported["decompose"]).embed(crops)
    assert np.min(cosine_similarity(int8, fp32)) >= INT8_MIN_COSINE
    assert out.stat().st_size < 0.45 * exported["decompose"].stat().st_size
    with pytest.raises(ValueError, match="no node 'nonesuch'"):
        quantize_onnx(kept, tmp_path / "x.onnx", crops, keep_float=["nonesuch"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mobileface", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


@pytest.mark.slow
def test_export_cli_reports_graph_and_parity(tmp_path: Path) -> None:
    out = tmp_path / "s.onnx"
    result = _cli("export", "mobilefacenet_s", "--onnx", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parity"]["min_cosine"] >= FP32_MIN_COSINE
    assert report["graph"]["prelu_ops"] == 0 and report["graph"]["gdconv"]
    assert "random weights" in result.stderr
    assert OnnxEmbedder(out).architecture == "mobilefacenet_s"


def test_export_cli_errors(tmp_path: Path) -> None:
    result = _cli("export", "nonesuch", "--onnx", str(tmp_path / "x.onnx"))
    assert result.returncode == 1 and "neither a training checkpoint" in result.stderr
    result = _cli("export", "mobilefacenet", "--onnx", str(tmp_path / "x.onnx"), "--int8")
    assert result.returncode == 1 and "--int8 needs --calib" in result.stderr


@pytest.mark.slow
def test_export_cli_int8(tmp_path: Path) -> None:
    calib = _face_folder(tmp_path / "calib", n=12)
    out = tmp_path / "m.onnx"
    result = _cli(
        "export",
        "mobilefacenet_s",
        "--onnx",
        str(out),
        "--int8",
        "--calib",
        str(calib),
        "--keep-float",
        "first,last",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    int8 = report["int8"]
    assert Path(int8["path"]) == tmp_path / "m-int8.onnx"
    assert int8["parity"]["min_cosine"] >= INT8_MIN_COSINE
    assert int8["size_mb"] < report["size_mb"] / 2
    assert set(report["speed_ms_1thread_batch1"]) == {"fp32", "int8"}


def test_tflite_export_when_litert_torch_is_installed(model, tmp_path: Path, inputs) -> None:
    pytest.importorskip("litert_torch", reason="litert-torch not installed (extra 'tflite')")
    from mobileface.export.tflite import export_tflite, tflite_parity

    path = export_tflite(model, tmp_path / "m.tflite")
    assert tflite_parity(model, path, inputs[:2]).ok(FP32_MIN_COSINE)
