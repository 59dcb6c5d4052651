"""1:1 verification end to end (real detector, real photos), and the verify/embed/bench CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobileface.errors import NoFaceError, OperatingPointError
from mobileface.runtime import (
    FaceVerifier,
    OnnxEmbedder,
    calibrated_fars,
    cosine_similarity,
    open_embedder,
)
from models_helpers import randomize_and_calibrate

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = {"far_1e-3": 0.31, "far_1e-4": 0.42}
PEER_INT8_MIN_COSINE = 0.97
"""Worst cosine between the int8 and fp32 embeddings of a trained MobileFaceNet (the peer) on
aligned LFW faces (measured about 0.98; mean about 0.99)."""


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    from mobileface.export.onnx import export_onnx
    from mobileface.models import create_model

    model = randomize_and_calibrate(create_model("mobilefacenet_s"), seed=7)
    folder = tmp_path_factory.mktemp("verify")
    return export_onnx(model, folder / "mfs.onnx", thresholds=THRESHOLDS)


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> dict[str, Path]:
    lfw = data_dir / "lfw" / "images"
    found = {
        "a1": lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg",
        "a2": lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg",
        "b1": lfw / "AJ_Cook" / "AJ_Cook_0001.jpg",
    }
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        pytest.skip(f"LFW photos missing: {missing}")
    return found


@pytest.fixture(scope="module")
def noise_png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("noface") / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (240, 200, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def verifier(onnx_file: Path, data_dir: Path) -> FaceVerifier:
    from mobileface.align import create_detector

    return FaceVerifier(OnnxEmbedder(onnx_file), detector=create_detector("yunet"))


def test_verify_two_photos(verifier: FaceVerifier, photos) -> None:
    result = verifier.verify(photos["a1"], photos["a2"])
    assert -1.0 <= result.score <= 1.0
    assert result.threshold == 0.31 and "model metadata" in result.threshold_source
    assert result.same == (result.score >= 0.31)
    assert result.boxes.shape == (2, 4) and result.landmarks.shape == (2, 5, 2)
    assert set(result.timings) == {"decode", "detect", "align", "embed", "total"}
    assert all(v >= 0 for v in result.timings.values())
    out = result.to_dict()
    assert {"score", "same", "threshold", "faces", "timings_ms"} <= set(out)
    # Paths, encoded bytes and decoded arrays are the same photo.
    from mobileface.image import load_image

    as_bytes = verifier.verify(photos["a1"].read_bytes(), photos["a2"])
    as_array = verifier.verify(load_image(photos["a1"]), photos["a2"])
    assert as_bytes.score == pytest.approx(result.score, abs=1e-5)
    assert as_array.score == pytest.approx(result.score, abs=1e-5)


def test_thresholds_given_and_fallback(onnx_file: Path) -> None:
    emb = OnnxEmbedder(onnx_file)
    given = FaceVerifier(emb, threshold=0.5)
    assert given.threshold_source == "given" and given.operating_point is None
    for far in ("far_1e-4", "1e-4", 1e-4, 0.0001):
        assert FaceVerifier(emb, far=far).threshold == 0.42
    default = FaceVerifier(emb)
    assert default.threshold == 0.31 and default.threshold_source.endswith("FAR 1e-3")
    point = default.operating_point
    assert point.far == 1e-3 and point.key == "far_1e-3" and point.threshold == 0.31
    assert point.tar is None  # metadata thresholds only: no calibration record
    emb.thresholds = {}
    assert FaceVerifier(emb).threshold is None
    fallback = FaceVerifier(emb, fallback_threshold=0.35)
    assert fallback.threshold == 0.35 and fallback.threshold_source.startswith("fallback")
    with pytest.raises(ValueError, match="unknown face policy"):
        FaceVerifier(emb, policy="biggest")


def test_an_uncalibrated_far_is_an_error_listing_the_calibrated_ones(onnx_file: Path) -> None:
    emb = OnnxEmbedder(onnx_file)
    with pytest.raises(OperatingPointError, match=r"FAR 1e-2; calibrated FARs: 1e-3, 1e-4"):
        FaceVerifier(emb, far=1e-2)
    with pytest.raises(OperatingPointError, match="between 0 and 1"):
        FaceVerifier(emb, far=2)
    emb.thresholds = {}
    with pytest.raises(OperatingPointError, match="no calibrated thresholds"):
        FaceVerifier(emb, far="1e-3", fallback_threshold=0.35)


def test_operating_point_tar_comes_from_the_model_card(onnx_file: Path, tmp_path: Path) -> None:
    model = tmp_path / "carded.onnx"
    model.write_bytes(onnx_file.read_bytes())
    card = {
        "thresholds": {"far_1e-3": 0.3, "far_1e-4": 0.4},
        "calibration": {"tar": {"far_1e-3": 0.9, "far_1e-4": 0.7}, "pairs": 1234},
    }
    model.with_suffix(".json").write_text(json.dumps(card))
    embedder = open_embedder(model)
    assert calibrated_fars(embedder) == ["1e-3", "1e-4"]
    point = FaceVerifier(embedder, far=1e-4).operating_point
    assert (point.threshold, point.tar, point.pairs) == (0.4, 0.7, 1234)
    assert point.to_dict() == {
        "far": 0.0001,
        "key": "far_1e-4",
        "tar": 0.7,
        "calibration_pairs": 1234,
    }


def test_warm_up_runs_every_step(onnx_file: Path, data_dir: Path) -> None:
    from mobileface.align import create_detector

    verifier = FaceVerifier(OnnxEmbedder(onnx_file), detector=create_detector("yunet"))
    assert verifier.warm_up() > 0


def test_photos_without_a_face_raise_no_face_error(verifier, photos, noise_png) -> None:
    with pytest.raises(NoFaceError, match=r"noise\.png: no face found by yunet"):
        verifier.verify(photos["a1"], noise_png)
    with pytest.raises(NoFaceError, match="image B: no face found"):
        verifier.verify(photos["a1"], noise_png.read_bytes())


def test_one_network_call_for_both_crops_gives_the_scores_of_one_at_a_time(
    onnx_file: Path, verifier: FaceVerifier, photos
) -> None:
    one_by_one = FaceVerifier(verifier.embedder, detector=verifier.detector, batch=False)
    assert verifier.batch and not one_by_one.batch
    for a, b in ((photos["a1"], photos["a2"]), (photos["a1"], photos["b1"])):
        batched, single = verifier.verify(a, b), one_by_one.verify(a, b)
        assert batched.score == pytest.approx(single.score, rel=1e-4, abs=1e-5)
        assert np.array_equal(batched.landmarks, single.landmarks)
    calls = []
    embed = verifier.embedder.embed
    verifier.embedder.embed = lambda crops: calls.append(len(crops)) or embed(crops)
    try:
        verifier.verify(photos["a1"], photos["b1"])
        one_by_one.verify(photos["a1"], photos["b1"])
    finally:
        del verifier.embedder.embed
    assert calls == [2, 1, 1]


def test_embed_image(verifier: FaceVerifier, photos) -> None:
    vector, face = verifier.embed_image(photos["b1"])
    assert vector.shape == (verifier.embedder.embedding_size,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert face.landmarks.shape == (5, 2) and face.score > 0.5


@pytest.mark.slow
def test_peer_model_scores_and_int8_parity(data_dir: Path, photos, tmp_path: Path) -> None:
    """A trained MobileFaceNet from elsewhere (comparison only): same-person pairs score above
    different-person pairs, and our int8 pipeline keeps its embeddings (opset 11, batch 1)."""
    from mobileface.align import align_image, create_detector
    from mobileface.export.quantize import quantize_onnx
    from mobileface.image import load_image

    peer = data_dir.parent / "peers" / "mobilefacenet-peer.onnx"
    if not peer.is_file():
        pytest.skip(f"peer model not found at {peer}")
    fp32 = open_embedder(peer)
    detector = create_detector("yunet")
    verifier = FaceVerifier(fp32, detector=detector)
    same = verifier.verify(photos["a1"], photos["a2"]).score
    different = verifier.verify(photos["a1"], photos["b1"]).score
    assert same > different + 0.2
    lfw = sorted((data_dir / "lfw" / "images").glob("A*/*_0001.jpg"))[:24]
    crops = np.stack([align_image(load_image(p), detector)[0] for p in lfw])
    calib = data_dir / "celeba-test-112"
    if not calib.is_dir():
        pytest.skip(f"calibration crops not found at {calib}")
    out = quantize_onnx(peer, tmp_path / "peer-int8.onnx", calib, max_images=32).path
    int8 = OnnxEmbedder(out)
    assert int8.precision == "int8"
    cos = cosine_similarity(int8.embed(crops), fp32.embed(crops))
    assert np.min(cos) >= PEER_INT8_MIN_COSINE and np.mean(cos) >= 0.985


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env.setdefault("MOBILEFACE_DATA", str(REPO.parent / "shared" / "data"))
    return subprocess.run(
        [sys.executable, "-m", "mobileface", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )


def _one_json_line(stdout: str):
    lines = stdout.splitlines()
    assert len(lines) == 1, f"--json must print one line, got {len(lines)}"
    return json.loads(lines[0])


def test_verify_cli_json(onnx_file: Path, photos) -> None:
    result = _cli("verify", str(photos["a1"]), str(photos["a2"]), "-m", str(onnx_file), "--json")
    assert result.returncode == 0, result.stderr
    out = _one_json_line(result.stdout)
    assert {"score", "same", "threshold", "operating_point", "cold_start_ms"} <= set(out)
    assert out["threshold"] == 0.31 and out["same"] == (out["score"] >= 0.31)
    assert len(out["faces"]) == 2 and out["model"] == "mfs"
    assert out["operating_point"] == {
        "far": 0.001,
        "key": "far_1e-3",
        "tar": None,
        "calibration_pairs": None,
    }
    assert out["calibrated_fars"] == ["1e-3", "1e-4"]
    assert out["precision"] == {
        "precision": "fp32",
        "model": "mfs",
        "source": "model",
        "reason": "--model",
    }
    from mobileface.align.yunet import DETECT_SIDES

    assert out["detect_sides"] == list(DETECT_SIDES)
    assert set(out["timings_ms"]) == {"decode", "detect", "align", "embed", "total"}
    assert set(out["cold_start_ms"]) == {"load", "warm_up"}
    given = _cli(
        "verify", str(photos["a1"]), str(photos["b1"]), "-m", str(onnx_file), "--threshold", "0.99"
    )
    assert given.returncode == 0, given.stderr
    assert given.stdout.startswith("different people: score") and "(given)" in given.stdout
    assert "operating point: threshold given by --threshold" in given.stdout


def test_verify_cli_far_picks_another_calibrated_threshold(onnx_file: Path, photos) -> None:
    pair = (str(photos["a1"]), str(photos["a2"]))
    strict = _cli("verify", *pair, "-m", str(onnx_file), "--far", "1e-4", "--json")
    assert strict.returncode == 0, strict.stderr
    out = _one_json_line(strict.stdout)
    assert out["threshold"] == 0.42 and out["operating_point"]["key"] == "far_1e-4"
    text = _cli("verify", *pair, "-m", str(onnx_file), "--far", "0.0001")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "threshold 0.4200" in lines[0]
    assert (
        lines[1].startswith("operating point: FAR 1e-4")
        and "calibrated FARs: 1e-3, 1e-4" in lines[1]
    )
    assert lines[2].startswith("time: ") and lines[2].endswith("warm")
    assert lines[3].startswith("cold start: ") and "loading the models" in lines[3]
    missing = _cli("verify", *pair, "-m", str(onnx_file), "--far", "1e-2", "--json")
    assert missing.returncode == 1
    error = _one_json_line(missing.stdout)
    assert (
        error["error"] == "uncalibrated_far" and "calibrated FARs: 1e-3, 1e-4" in error["message"]
    )
    both = _cli("verify", *pair, "--far", "1e-4", "--threshold", "0.5")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_verify_cli_bundled_weights_show_the_cards_tar(photos) -> None:
    from mobileface import weights

    card = weights.load_model_card("mobilefacenet")
    result = _cli("verify", str(photos["a1"]), str(photos["a2"]), "--json", "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    point = _one_json_line(result.stdout)["operating_point"]
    assert point["tar"] == pytest.approx(card["calibration"]["tar"]["far_1e-3"], abs=1e-6)
    assert point["calibration_pairs"] == card["calibration"]["pairs"]
    text = _cli("verify", str(photos["a1"]), str(photos["a2"]), "--precision", "fp32")
    tar = 100 * card["calibration"]["tar"]["far_1e-3"]
    assert f"operating point: FAR 1e-3 (different-person pairs accepted), TAR {tar:.1f} %" in (
        text.stdout
    )


def test_verify_cli_says_which_precision_it_picked(photos) -> None:
    """Without --model, the default weights run in the precision picked for this CPU."""
    from mobileface import weights
    from mobileface.runtime.precision import PRECISION_ENV, choose_precision

    pair = (str(photos["a1"]), str(photos["a2"]))
    env = {k: v for k, v in os.environ.items() if k != PRECISION_ENV}
    expected = choose_precision(env={})
    out = _one_json_line(_cli("verify", *pair, "--json", env=env).stdout)
    assert out["precision"] == expected.to_dict() and out["model"] == expected.model
    card = weights.load_model_card(expected.model)
    assert out["operating_point"]["tar"] == pytest.approx(card["calibration"]["tar"]["far_1e-3"])
    forced = _cli("verify", *pair, "--json", env={**env, PRECISION_ENV: "fp32"})
    assert _one_json_line(forced.stdout)["precision"] == {
        "precision": "fp32",
        "model": weights.default_weights_name(),
        "source": "env",
        "reason": f"{PRECISION_ENV}=fp32",
    }
    flag = _cli("verify", *pair, "--precision", "int8", env={**env, PRECISION_ENV: "fp32"})
    assert flag.returncode == 0, flag.stderr
    assert flag.stdout.splitlines()[-1] == (
        f"model: {weights.default_weights_name()}_int8, int8 (flag: --precision=int8)"
    )
    both = _cli("verify", *pair, "-m", "mobilefacenet", "--precision", "int8", "--json")
    assert both.returncode == 2 and _one_json_line(both.stdout)["error"] == "usage"


def test_verify_cli_json_errors(onnx_file: Path, photos, noise_png: Path, tmp_path: Path) -> None:
    result = _cli("verify", str(photos["a1"]), str(noise_png), "-m", str(onnx_file), "--json")
    assert result.returncode == 1
    error = _one_json_line(result.stdout)
    assert error["error"] == "no_face" and "noise.png" in error["message"]
    assert error["command"] == "verify"
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    bad = _cli("verify", str(not_image), str(photos["a2"]), "-m", str(onnx_file), "--json")
    assert bad.returncode == 1 and _one_json_line(bad.stdout)["error"] == "bad_image"


def test_verify_cli_falls_back_loudly_without_thresholds(onnx_file, photos, tmp_path) -> None:
    from mobileface.export.onnx import update_metadata

    bare = tmp_path / "bare.onnx"
    bare.write_bytes(onnx_file.read_bytes())
    update_metadata(bare, {"thresholds": None})
    result = _cli("verify", str(photos["a1"]), str(photos["a2"]), "-m", str(bare), "--json")
    assert result.returncode == 0, result.stderr
    assert "no calibrated threshold" in result.stderr
    assert json.loads(result.stdout)["threshold"] == 0.35


def test_verify_cli_errors(onnx_file: Path, photos, noise_png: Path, tmp_path: Path) -> None:
    result = _cli("verify", str(photos["a1"]), str(noise_png), "-m", str(onnx_file))
    assert result.returncode == 1
    assert "mobileface verify: error:" in result.stderr and "no face found" in result.stderr
    assert "Traceback" not in result.stderr
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx" * 100)
    result = _cli("verify", str(photos["a1"]), str(photos["a2"]), "-m", str(garbage))
    assert result.returncode == 1 and "not a usable ONNX model" in result.stderr
    result = _cli("verify", str(photos["a1"]), str(photos["a2"]), "-m", "nonesuch")
    assert result.returncode == 1 and "neither a model file nor bundled weights" in result.stderr
    assert "valid --model names: mobilefacenet" in result.stderr
    assert "mobileface models --weights" in result.stderr


def test_embed_cli(onnx_file: Path, photos, noise_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npy"
    files = [str(photos["a1"]), str(noise_png), str(photos["b1"])]
    result = _cli("embed", *files, "--out", str(out), "-m", str(onnx_file), "--skip-missing")
    assert result.returncode == 0, result.stderr
    vectors = np.load(out)
    assert vectors.shape == (3, 128) and np.isnan(vectors[1]).all()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, atol=1e-5)
    index = json.loads(out.with_suffix(".json").read_text())
    assert [r["image"] for r in index["images"]] == files and "error" in index["images"][1]
    strict = _cli("embed", *files, "--out", str(out), "-m", str(onnx_file))
    assert strict.returncode == 1 and "no face found" in strict.stderr
    aligned = _cli("embed", str(photos["a1"]), "--aligned", "--out", str(out), "-m", str(onnx_file))
    assert aligned.returncode == 1 and "is not an aligned 112x112 crop" in aligned.stderr


def test_bench_cli(onnx_file: Path, photos) -> None:
    result = _cli(
        "bench",
        str(onnx_file),
        "--threads",
        "1",
        "--batch",
        "1,2",
        "--seconds",
        "0.2",
        "--pair",
        str(photos["a1"]),
        str(photos["a2"]),
        "--runs",
        "3",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["size_mb"] > 0.5 and len(report["latency"]) == 2
    row = report["latency"][1]
    assert row["batch"] == 2 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["images_per_s"] > 0 and row["peak_rss_mb"] > 0
    assert set(report["verify"]["ms"]) >= {"decode", "detect", "align", "embed", "total"}
    assert report["verify"]["detect_sides"] and report["precision"]["source"] == "model"
    table = _cli("bench", str(onnx_file), "--threads", "1", "--batch", "1", "--seconds", "0.2")
    assert table.returncode == 0, table.stderr
    assert "p50 ms" in table.stdout and "img/s" in table.stdout
