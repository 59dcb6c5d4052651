"""``mobileface eval`` and ``eval-ident`` as a user runs them (real subprocesses, real models)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FOLD_SIZE = 10  # pairs of each kind per fold in the small pair files below


def mobileface(*args: str, env_extra: dict | None = None, cwd: Path | None = None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mobileface", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def peer(data_dir: Path) -> Path:
    path = data_dir.parent / "peers" / "mobilefacenet-peer.onnx"
    if not path.is_file():
        pytest.skip(f"peer model not found at {path}")
    return path


def small_pairs(lfw: Path, out: Path, folds: int = 2, missing_line: str | None = None) -> Path:
    """The first FOLD_SIZE same and different pairs of the first ``folds`` folds of View 2."""
    body = (lfw / "pairs.txt").read_text().splitlines()[1:]
    lines = [f"{folds}\t{FOLD_SIZE}"]
    for f in range(folds):
        block = body[f * 600 : (f + 1) * 600]
        lines += block[:FOLD_SIZE] + block[300 : 300 + FOLD_SIZE]
    if missing_line:
        lines[-1] = missing_line
    out.write_text("\n".join(lines) + "\n")
    return out


def test_help_lists_the_verbs() -> None:
    result = mobileface("--help")
    assert result.returncode == 0
    assert "eval-ident" in result.stdout and "eval " in result.stdout
    result = mobileface("eval", "--help")
    assert result.returncode == 0
    for flag in ("--pairs", "--bin", "--aligned", "--flip", "--report", "--calibrate", "--pose"):
        assert flag in result.stdout


def test_no_model_and_no_bundled_weights_is_a_clear_error(tmp_path) -> None:
    pairs = tmp_path / "p.txt"
    pairs.write_text("1\nA 1 2\nA 1 B 1\n")
    (tmp_path / "img").mkdir()
    env = {"MOBILEFACE_WEIGHTS_DIR": str(tmp_path / "none")}
    result = mobileface("eval", "--pairs", pairs, "--images", tmp_path / "img", env_extra=env)
    assert result.returncode == 1
    assert "none of the images" in result.stderr
    img = tmp_path / "img" / "A"
    img.mkdir()
    (img / "A_0001.jpg").write_bytes(b"x")
    result = mobileface("eval", "--pairs", pairs, "--images", tmp_path / "img", env_extra=env)
    assert result.returncode == 1
    assert "--model" in result.stderr and "no trained weights" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("10\t300\nAbel_Pacheco\t1\t4\n", "header says 10 fold(s)"),
        ("1\nAbel_Pacheco\tone\t4\nA 1 B 1\n", "expected 'name n1 n2'"),
        ("ten\n", "expected a header"),
        ("", "empty pair list"),
    ],
)
def test_malformed_pair_files_are_refused(tmp_path, data_dir, content, message) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(content)
    images = data_dir / "lfw" / "images"
    result = mobileface("eval", "--model", "x.onnx", "--pairs", pairs, "--images", images)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_options_are_refused(tmp_path, peer) -> None:
    result = mobileface("eval", "--model", peer, "--bin", tmp_path / "none.bin")
    assert result.returncode == 1 and "no such file" in result.stderr
    result = mobileface("eval", "--model", peer, "--pairs", tmp_path / "p.txt")
    assert result.returncode == 1 and "--images" in result.stderr
    result = mobileface("eval", "--model", peer, "--bin", peer, "--far", "2")
    assert result.returncode == 1 and "--far" in result.stderr


@pytest.mark.slow
def test_eval_end_to_end_from_lfw_photos_then_from_the_cache(tmp_path, data_dir, peer) -> None:
    lfw = data_dir / "lfw"
    pairs = small_pairs(lfw, tmp_path / "pairs.txt", missing_line="Nobody_Here\t1\tAbel_Pacheco\t1")
    cache = tmp_path / "cache.sqlite"
    args = ["eval", "--model", peer, "--pairs", pairs, "--images", lfw / "images"]
    args += ["--flip", "--json", "--cache", cache, "--report", tmp_path / "report", "--pose"]
    first = mobileface(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    for key in ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far", "threshold", "pairs"):
        assert key in out
    assert out["pairs"] == 4 * FOLD_SIZE  # the pair with a missing image is kept
    assert set(out["tar_at_far"]) == {"0.1", "0.01", "0.001", "0.0001"}
    assert out["tar_at_far"]["0.1"] is not None and out["tar_at_far"]["0.01"] is None
    assert "needs at least 100 different pairs" in out["tar_at_far_unsupported"]["0.01"]
    assert out["failed_images"] == 1 and out["unreadable_images"] == 1
    assert out["failed"] == {"Nobody_Here/Nobody_Here_0001": "missing: no such file"}
    assert out["unscorable_pairs"] == 1
    assert out["accuracy"] >= 0.9 and out["auc"] >= 0.95
    assert out["flip"] is True and out["aligned"] is False
    assert out["folds_from"] == "pair file" and len(out["fold_accuracies"]) == 2
    assert set(out["pose"]["bins"]) == {"frontal-frontal", "frontal-profile", "profile-profile"}
    n_images = out["images"]
    assert out["embedded_images"] == n_images - 1 and out["cached_images"] == 0
    for name in ("roc.png", "det.png", "histograms.png", "summary.md", "summary.html"):
        assert (tmp_path / "report" / name).is_file()

    second = mobileface(*args)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["embedded_images"] == 0 and again["cached_images"] == n_images - 1
    assert again["accuracy"] == out["accuracy"] and again["auc"] == out["auc"]

    text = mobileface(*args[:-6], "--cache", cache)  # the table, from the cache
    assert text.returncode == 0, text.stderr
    assert "mobilefacenet-peer" in text.stdout and "TAR@0.001" in text.stdout
    assert "1 failed images" in text.stdout and "Nobody_Here" in text.stdout


@pytest.mark.slow
def test_eval_bin_two_models_and_calibration(tmp_path, data_dir, peer) -> None:
    """An InsightFace .bin of aligned LFW crops; two models in one report; thresholds into the
    card that the runtime then reads."""
    from mobileface.align import align_image, create_detector
    from mobileface.data.pairs import read_pairs
    from mobileface.data.verification_bin import write_bin
    from mobileface.image import load_image
    from mobileface.runtime import open_embedder

    lfw = data_dir / "lfw"
    pairs = read_pairs(small_pairs(lfw, tmp_path / "p.txt", folds=1), lfw / "images")
    detector = create_detector("yunet")
    import cv2

    images = []
    for p in pairs:
        for path in (p.image_a, p.image_b):
            crop, _ = align_image(load_image(path), detector)
            ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            images.append(png.tobytes())
    bin_path = tmp_path / "lfw_small.bin"
    write_bin(bin_path, images, [p.same for p in pairs])
    other = tmp_path / "models" / "peer-copy.onnx"
    other.parent.mkdir()
    shutil.copy(peer, other)

    result = mobileface(
        "eval",
        "--model",
        peer,
        "--model",
        other,
        "--mean",
        "127.5",
        "--std",
        "128",
        "--bin",
        bin_path,
        "--flip",
        "--json",
        "--no-cache",
        "--report",
        tmp_path / "report",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    first, second = out["models"]
    assert first["model"] == "mobilefacenet-peer" and second["model"] == "peer-copy"
    assert first["pairs"] == 2 * FOLD_SIZE and first["aligned"] is True
    assert first["folds_from"].startswith("10 contiguous")
    assert first["auc"] == second["auc"] and first["auc"] >= 0.95
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "mobilefacenet-peer" in md and "peer-copy" in md

    result = mobileface(
        "eval", "--model", other, "--bin", bin_path, "--no-cache", "--calibrate", "--far", "0.1"
    )
    assert result.returncode == 0, result.stderr
    card = json.loads(other.with_suffix(".json").read_text())
    assert set(card["thresholds"]) == {"far_1e-1"}
    assert card["calibration"]["dataset"] == "lfw_small.bin"
    embedder = open_embedder(other)
    assert embedder.thresholds["far_1e-1"] == pytest.approx(card["thresholds"]["far_1e-1"])


@pytest.mark.slow
def test_eval_ident_end_to_end(tmp_path, data_dir, peer) -> None:
    pins = data_dir / "pins-112"
    people = sorted(p for p in pins.iterdir() if p.is_dir())[:8]
    gallery = tmp_path / "people"
    for person in people:
        (gallery / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:4]:
            (gallery / person.name / image.name).symlink_to(image)
    distractors = tmp_path / "distractors"
    distractors.mkdir()
    for image in sorted((sorted(pins.iterdir())[20]).iterdir())[:3]:
        (distractors / image.name).symlink_to(image)
    args = ["eval-ident", "--model", peer, "--gallery", gallery, "--aligned", "--no-cache"]
    args += ["--unknown", "0.25", "--distractors", distractors, "--json", "--max-rank", "5"]
    args += ["--report", tmp_path / "report"]
    result = mobileface(*args)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["gallery_identities"] == 6 and out["distractors"] == 3
    assert out["mated_probes"] == 6 * 3 and out["nonmated_probes"] == 2 * 3
    assert out["rank1"] >= 0.8 and out["rank5"] >= out["rank1"]
    assert len(out["cmc"]) == 5
    assert out["tpir_at_fpir"]["0.1"] is None  # six non-mated searches cannot measure 1 in 10
    assert "non-mated probes" in out["tpir_at_fpir_unsupported"]["0.1"]
    assert (tmp_path / "report" / "cmc.png").is_file()
    text = mobileface(*args[:-5])
    assert text.returncode == 0, text.stderr
    assert "rank-1" in text.stdout and "6 identities enrolled" in text.stdout
