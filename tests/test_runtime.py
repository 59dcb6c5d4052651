"""The torch-free runtime: preprocessing, ONNX embedders, model files, weights, scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mobileface.errors import ImageError, ModelFileError
from mobileface.runtime import (
    Normalization,
    OnnxEmbedder,
    as_crop_batch,
    cosine_matrix,
    cosine_similarity,
    decode_metadata,
    encode_metadata,
    l2_normalize,
    open_embedder,
)

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = {"far_1e-3": 0.31, "far_1e-4": 0.42}


@pytest.fixture(scope="module")
def model():
    from mobileface.models import create_model
    from models_helpers import randomize_and_calibrate

    return randomize_and_calibrate(create_model("mobilefacenet"), seed=1)


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory) -> Path:
    from mobileface.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("runtime") / "mfn.onnx"
    return export_onnx(model, path, thresholds=THRESHOLDS)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 112, 112, 3))
    noise = rng.integers(-40, 40, (5, 112, 112, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# -- preprocessing ---------------------------------------------------------------------------


def test_normalization_scales_and_lays_out_channels_first() -> None:
    crop = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(1, 2, 3, 3) * 10
    ref = crop.astype(np.float64)
    x = Normalization()(crop)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 1], (ref[0, :, :, 1] - 127.5) / 128.0)
    bgr = Normalization(mean=(1, 2, 3), std=(2, 4, 8), bgr=True)(crop)
    np.testing.assert_allclose(bgr[0, 0], (ref[0, :, :, 2] - 1) / 2)
    np.testing.assert_allclose(bgr[0, 2], (ref[0, :, :, 0] - 3) / 8)
    assert Normalization(mean="0.5,0.5,0.5").mean == (0.5, 0.5, 0.5)
    assert Normalization().replace(std=1).to_dict() == {"mean": 127.5, "std": 1.0, "bgr": False}
    with pytest.raises(ValueError, match="zero"):
        Normalization(std=0)


def test_crop_batches_are_checked_with_clear_errors() -> None:
    good = np.zeros((112, 112, 3), np.uint8)
    assert as_crop_batch(good, (112, 112)).shape == (1, 112, 112, 3)
    assert as_crop_batch([good, good], (112, 112)).shape == (2, 112, 112, 3)
    assert as_crop_batch([], (112, 112)).shape == (0, 112, 112, 3)
    with pytest.raises(ImageError, match=r"crop 1: shape 100x100x3, but this model takes 112x112"):
        as_crop_batch([good, np.zeros((100, 100, 3), np.uint8)], (112, 112))
    with pytest.raises(ImageError, match="dtype float32"):
        as_crop_batch(good.astype(np.float32), (112, 112))
    with pytest.raises(ImageError, match="N x H x W x 3"):
        as_crop_batch(np.zeros((112, 112), np.uint8), (112, 112))


# -- embedders -------------------------------------------------------------------------------


def test_onnx_embedder_reads_everything_from_the_file(onnx_file: Path) -> None:
    emb = OnnxEmbedder(onnx_file)
    assert emb.input_size == (112, 112)
    assert emb.embedding_size == 128
    assert emb.normalization == Normalization(127.5, 128.0, False)
    assert emb.thresholds == THRESHOLDS
    assert emb.architecture == "mobilefacenet"
    assert emb.metadata["prelu"] == "decomposed" and emb.precision == "fp32"
    assert len(emb.sha256) == 64


def test_onnx_embeddings_match_pytorch(model, onnx_file: Path, crops: np.ndarray) -> None:
    from mobileface.export.torch_embedder import TorchEmbedder

    ours = OnnxEmbedder(onnx_file).embed(crops)
    ref = TorchEmbedder(model).embed(crops)
    assert ours.shape == (5, 128) and ours.dtype == np.float32
    assert np.min(cosine_similarity(ours, ref)) >= 0.9999


def test_batching_and_fixed_batch_files_give_the_same_embeddings(
    model, onnx_file: Path, crops: np.ndarray, tmp_path: Path
) -> None:
    from mobileface.export.onnx import export_onnx
    from models_helpers import assert_outputs_match

    whole = OnnxEmbedder(onnx_file, batch_size=32).embed(crops)
    pieces = OnnxEmbedder(onnx_file, batch_size=2).embed(list(crops))
    assert_outputs_match(whole, pieces)
    fixed = export_onnx(model, tmp_path / "fixed.onnx", dynamic_batch=False)
    one = OnnxEmbedder(fixed)
    assert one._fixed_batch == 1
    assert_outputs_match(one.embed(crops), whole)
    assert one.embed(crops[:0]).shape == (0, 128)


def test_wrong_crop_shapes_are_refused(onnx_file: Path) -> None:
    emb = OnnxEmbedder(onnx_file)
    with pytest.raises(ImageError, match="takes 112x112x3 aligned RGB crops"):
        emb.embed(np.zeros((2, 96, 112, 3), np.uint8))


def test_open_embedder_overrides_preprocessing(onnx_file: Path) -> None:
    emb = open_embedder(onnx_file, mean=0, std="255", bgr=True, threads=2)
    assert emb.normalization == Normalization(0.0, 255.0, True)
    assert emb.threads == 2 and emb.name == "mfn"


def test_open_embedder_runs_training_checkpoints(model, tmp_path: Path, crops) -> None:
    from mobileface.models.checkpoint import save_model_checkpoint

    ckpt = save_model_checkpoint(model, tmp_path / "run.pt")
    (tmp_path / "run.json").write_text(json.dumps({"thresholds": THRESHOLDS}))
    emb = open_embedder(ckpt)
    assert type(emb).__name__ == "TorchEmbedder"
    assert emb.thresholds == THRESHOLDS and emb.embed(crops).shape == (5, 128)


# -- bad model files -------------------------------------------------------------------------


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_missing_and_corrupt_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        OnnxEmbedder(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(2048))
    with pytest.raises(ModelFileError, match="garbage.onnx: not a usable ONNX model"):
        OnnxEmbedder(garbage)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a usable ONNX model"):
        open_embedder(empty)


def test_onnx_files_that_are_not_embedders_are_refused(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 10])
    two = _save(
        helper.make_graph([helper.make_node("Add", ["x", "z"], ["y"])], "g", [x, z], [y]),
        tmp_path / "two.onnx",
    )
    with pytest.raises(ModelFileError, match="not a face embedder: it takes 2 inputs"):
        OnnxEmbedder(two)
    flat = _save(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
        tmp_path / "flat.onnx",
    )
    with pytest.raises(ModelFileError, match="not a face embedder: its input 'x' is"):
        OnnxEmbedder(flat)
    img = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, 8, 8])
    same = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 8, 8])
    identity = _save(
        helper.make_graph([helper.make_node("Relu", ["img"], ["out"])], "g", [img], [same]),
        tmp_path / "identity.onnx",
    )
    with pytest.raises(ModelFileError, match="not a face embedder: a batch of 1 gives"):
        OnnxEmbedder(identity)


def test_wrong_input_sizes_are_refused(onnx_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="takes 112x112 inputs, not 96x96"):
        OnnxEmbedder(onnx_file, input_size=(96, 96))
    # A file whose spatial size is dynamic and unstated needs one; a wrong one fails clearly.
    proto = onnx.load(str(onnx_file))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    del proto.metadata_props[:]
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(proto, str(dynamic))
    with pytest.raises(ModelFileError, match="input size is not fixed in the file"):
        OnnxEmbedder(dynamic)
    with pytest.raises(ModelFileError, match="does not run on 96x96 inputs"):
        OnnxEmbedder(dynamic, input_size=(96, 96))
    assert OnnxEmbedder(dynamic, input_size=(112, 112)).embedding_size == 128


# -- weights registry ------------------------------------------------------------------------


def test_no_bundled_weights_says_to_pass_a_model(monkeypatch, tmp_path: Path) -> None:
    from mobileface import weights

    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))
    assert weights.list_weights() == [] and weights.default_weights_name() is None
    with pytest.raises(ModelFileError, match=r"pass --model PATH\.onnx"):
        weights.resolve_weights("mobilefacenet")
    with pytest.raises(ModelFileError, match="no such model file"):
        weights.resolve_weights("elsewhere/model.onnx")


def test_bundled_weights_resolve_with_their_card(monkeypatch, tmp_path: Path, model) -> None:
    from mobileface import weights
    from mobileface.export.onnx import export_onnx

    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))
    export_onnx(model, tmp_path / "mobilefacenet.onnx")  # no thresholds in the file
    (tmp_path / "mobilefacenet.json").write_text(json.dumps({"thresholds": THRESHOLDS}))
    (tmp_path / "orphan.onnx").write_bytes(b"no card, not bundled")
    assert weights.list_weights() == ["mobilefacenet"]
    assert weights.default_weights_name() == "mobilefacenet"
    assert weights.resolve_weights("mobilefacenet") == tmp_path / "mobilefacenet.onnx"
    assert weights.card_threshold(weights.load_model_card("mobilefacenet")) == 0.31
    emb = open_embedder("mobilefacenet")
    assert emb.name == "mobilefacenet"
    assert emb.thresholds == THRESHOLDS and "model card" in emb.thresholds_source
    with pytest.raises(ModelFileError, match=r"model names: mobilefacenet \(bundled weights\)"):
        weights.resolve_weights("nonesuch")


# -- precision of the default model -----------------------------------------------------------


VNNI = {"fpu", "avx2", "avx512f", "avx512_vnni"}
AVX2_ONLY = {"fpu", "sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize(
    ("flags", "loss", "expected"),
    [
        (VNNI, 0.23, "int8"),
        ({"avx2", "avx_vnni"}, 0.23, "int8"),  # AVX-VNNI (no AVX-512)
        ({"avx512f", "amx_int8", "amx_tile"}, 0.0, "int8"),
        (AVX2_ONLY, 0.23, "fp32"),  # int8 would be slower (0.87x on an AVX2 EPYC)
        (set(), 0.23, "fp32"),  # flags unknown (not Linux): the safe choice
        ({"asimd", "asimddp"}, 0.23, "fp32"),  # ARM: unmeasured
        (VNNI, 0.31, "fp32"),  # int8 loses too much accuracy
        (VNNI, -0.1, "int8"),  # int8 as accurate or better
        (VNNI, None, "fp32"),  # no int8 weights, or no recorded accuracy
    ],
)
def test_auto_precision_from_cpu_flags_and_accuracy(flags, loss, expected) -> None:
    from mobileface.runtime.precision import decide_precision

    precision, source, reason = decide_precision(None, flags, loss, env={})
    assert (precision, source) == (expected, "auto")
    assert reason


def test_precision_env_and_flag_override_auto() -> None:
    from mobileface.errors import UsageError
    from mobileface.runtime.precision import PRECISION_ENV, decide_precision

    assert decide_precision(None, AVX2_ONLY, 0.2, env={PRECISION_ENV: "int8"})[:2] == (
        "int8",
        "env",
    )
    assert decide_precision(None, VNNI, 0.2, env={PRECISION_ENV: "FP32"})[:2] == ("fp32", "env")
    assert decide_precision(None, VNNI, 0.2, env={PRECISION_ENV: "auto"})[:2] == ("int8", "auto")
    assert decide_precision("fp32", VNNI, 0.2, env={PRECISION_ENV: "int8"})[:2] == (
        "fp32",
        "flag",
    )
    assert decide_precision("int8", set(), 5.0, env={}) == ("int8", "flag", "--precision=int8")
    with pytest.raises(UsageError, match="MOBILEFACE_PRECISION must be one of"):
        decide_precision(None, VNNI, 0.2, env={PRECISION_ENV: "fp16"})


def test_choose_precision_reads_the_model_cards(monkeypatch, tmp_path: Path, onnx_file) -> None:
    from mobileface import weights
    from mobileface.errors import ModelFileError
    from mobileface.runtime.precision import PRECISION_ENV, choose_precision, int8_loss_points

    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))
    monkeypatch.delenv(PRECISION_ENV, raising=False)

    def card(name: str, accuracy: float) -> None:
        (tmp_path / f"{name}.onnx").write_bytes(onnx_file.read_bytes())
        results = {"results": {"lfw_view2": {"accuracy": accuracy}}}
        (tmp_path / f"{name}.json").write_text(json.dumps(results))

    card("mobilefacenet", 0.9673)
    with pytest.raises(ModelFileError, match="no mobilefacenet_int8 weights"):
        choose_precision("int8")
    assert choose_precision(flags=VNNI).model == "mobilefacenet"  # no int8 weights
    card("mobilefacenet_int8", 0.9650)
    loss = int8_loss_points(
        weights.load_model_card("mobilefacenet"), weights.load_model_card("mobilefacenet_int8")
    )
    assert loss == pytest.approx(0.23)
    picked = choose_precision(flags=VNNI)
    assert (picked.precision, picked.model, picked.source) == ("int8", "mobilefacenet_int8", "auto")
    assert "avx512_vnni" in picked.reason and "0.23 points" in picked.reason
    assert picked.to_dict()["model"] == "mobilefacenet_int8"
    assert choose_precision(flags=AVX2_ONLY).model == "mobilefacenet"
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert choose_precision(flags=VNNI).source == "env"
    card("mobilefacenet_int8", 0.9630)  # 0.43 points below: not worth it
    monkeypatch.delenv(PRECISION_ENV)
    assert choose_precision(flags=VNNI).precision == "fp32"


def test_this_machines_cpu_flags_are_read() -> None:
    from mobileface.runtime.precision import cpu_flags

    flags = cpu_flags()
    if sys.platform.startswith("linux") and os.path.exists("/proc/cpuinfo"):
        assert flags, "no flags read from /proc/cpuinfo"


# -- scoring and metadata --------------------------------------------------------------------


def test_scoring_helpers() -> None:
    a = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(a), [[0.6, 0.8], [0.0, 0.0]])
    assert cosine_similarity([1, 0], [1, 1]) == pytest.approx(2**-0.5)
    assert cosine_similarity(np.eye(2), np.eye(2)).tolist() == [1.0, 1.0]
    assert cosine_matrix(np.eye(2), np.ones((3, 2))).shape == (2, 3)
    with pytest.raises(ValueError, match="sizes differ"):
        cosine_similarity(np.ones(3), np.ones(4))


def test_metadata_round_trip(onnx_file: Path) -> None:
    from mobileface.export.onnx import read_metadata, update_metadata

    values = {"architecture": "x", "input_size": (112, 96), "bgr": True, "thresholds": THRESHOLDS}
    encoded = encode_metadata(values)
    assert encoded["mobileface.input_size"] == "[112, 96]"
    assert decode_metadata({**encoded, "other": "1", "mobileface.mean": "{bad"}) == {
        **values,
        "input_size": [112, 96],
        "mean": "{bad",
    }
    meta = read_metadata(onnx_file)
    assert meta == OnnxEmbedder(onnx_file).metadata  # onnx and ONNX Runtime read the same
    assert meta["input_size"] == [112, 112] and meta["embedding_size"] == 128
    assert meta["thresholds"] == THRESHOLDS and meta["version"]
    copy = onnx_file.with_name("copy.onnx")
    copy.write_bytes(onnx_file.read_bytes())
    update_metadata(copy, {"thresholds": {"far_1e-3": 0.5}, "source": None})
    assert OnnxEmbedder(copy).thresholds == {"far_1e-3": 0.5}


# -- torch-free ------------------------------------------------------------------------------

BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def test_runtime_imports_and_runs_with_torch_blocked(onnx_file: Path) -> None:
    code = BLOCK_TORCH + (
        "import numpy as np\n"
        "import mobileface.runtime as rt, mobileface.runtime.bench, mobileface.weights\n"
        "import mobileface.cli.verify_cmd, mobileface.cli.embed_cmd, mobileface.cli.bench_cmd\n"
        f"emb = rt.open_embedder({str(onnx_file)!r})\n"
        "out = emb.embed(np.zeros((3, 112, 112, 3), np.uint8))\n"
        "v = rt.FaceVerifier(emb)\n"
        "print(out.shape, v.threshold, sorted(m for m in sys.modules if m.startswith('torch')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 128) 0.31 ['torch']"  # only the blocking entry


def test_checkpoints_without_torch_fail_clearly(tmp_path: Path) -> None:
    code = BLOCK_TORCH + (
        "from mobileface.runtime import open_embedder\n"
        "from mobileface.errors import MissingDependencyError\n"
        "try:\n"
        f"    open_embedder({str(tmp_path / 'run.pt')!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "needs PyTorch" in result.stdout
