"""`mobileface align` and the directory aligner: real photos, bad files, resume, workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobileface.align.batch import MANIFEST_NAME, align_directory
from mobileface.errors import DataFormatError
from mobileface.image import load_image

PEOPLE = ["Aaron_Eckhart", "Abel_Pacheco", "Adam_Sandler"]


@pytest.fixture(scope="module")
def yunet_env(data_dir: Path):
    model = data_dir.parent / "models" / "yunet.onnx"
    if not model.is_file():
        pytest.skip(f"YuNet model not found at {model}")
    return model


@pytest.fixture()
def photo_tree(data_dir: Path, yunet_env: Path, tmp_path: Path) -> Path:
    """A small LFW-like tree with real photos, plus every kind of bad file."""
    src = tmp_path / "src"
    lfw = data_dir / "lfw" / "images"
    count = 0
    for person in PEOPLE:
        for path in sorted((lfw / person).glob("*.jpg"))[:2]:
            (src / person).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / person / path.name)
            count += 1
    if count < 4:
        pytest.skip("not enough LFW images")
    good = next((src / PEOPLE[0]).glob("*.jpg"))
    bad = src / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "cut.jpg").write_bytes(good.read_bytes()[:2000])
    (bad / "text.png").write_text("hello")
    Image.new("RGB", (200, 200), (120, 120, 120)).save(bad / "noface.png")
    (src / "README.txt").write_text("not an image, not listed")
    return src


def _manifest(dst: Path) -> dict[str, dict]:
    lines = (dst / MANIFEST_NAME).read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}


def test_aligns_a_tree_reports_failures_and_resumes(photo_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    report = align_directory(photo_tree, dst, progress=False)
    good = sorted(p.relative_to(photo_tree) for p in photo_tree.glob("[A-Z]*/*.jpg"))
    assert report.total == len(good) + 4 and report.ignored == 1
    assert report.aligned == len(good) and report.failed == 4 and report.fallback == 0
    for rel in good:
        out = dst / rel.with_suffix(".png")
        crop = load_image(out)
        assert crop.shape == (112, 112, 3)
    manifest = _manifest(dst)
    assert set(manifest) == {"bad/empty.jpg", "bad/cut.jpg", "bad/text.png", "bad/noface.png"}
    assert "empty file" in manifest["bad/empty.jpg"]["reason"]
    assert "truncated" in manifest["bad/cut.jpg"]["reason"]
    assert "not an image" in manifest["bad/text.png"]["reason"]
    assert "no face" in manifest["bad/noface.png"]["reason"]
    assert all(r["status"] == "failed" and r["output"] is None for r in manifest.values())
    assert all(r["reason"].startswith(r["path"]) for r in manifest.values())
    assert not list(dst.rglob(".*.tmp"))
    assert report.lost_fraction == pytest.approx(4 / report.total)

    # Resume: nothing is redone; failures are retried and still failing.
    first_out = dst / good[0].with_suffix(".png")
    stamp = first_out.stat().st_mtime_ns
    again = align_directory(photo_tree, dst, progress=False)
    assert again.skipped == len(good) and again.aligned == 0 and again.failed == 4
    assert first_out.stat().st_mtime_ns == stamp
    assert set(_manifest(dst)) == set(manifest)

    # A deleted crop is redone; another size into the same folder is refused.
    first_out.unlink()
    third = align_directory(photo_tree, dst, progress=False)
    assert third.aligned == 1 and first_out.is_file()
    with pytest.raises(DataFormatError, match="other settings"):
        align_directory(photo_tree, dst, size=(112, 96), progress=False)


def test_center_fallback_writes_a_crop_and_marks_it(photo_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    report = align_directory(photo_tree, dst, fallback="center", progress=False)
    assert report.fallback == 1 and report.failed == 3
    entry = _manifest(dst)["bad/noface.png"]
    assert entry["status"] == "fallback" and entry["output"] == "bad/noface.png"
    assert load_image(dst / "bad" / "noface.png").shape == (112, 112, 3)
    # kept across a resumed run, while its crop exists
    again = align_directory(photo_tree, dst, fallback="center", progress=False)
    assert again.fallback == 1 and _manifest(dst)["bad/noface.png"]["status"] == "fallback"


def test_sizes_loose_crop_and_jpeg_output(photo_tree: Path, tmp_path: Path) -> None:
    r96 = align_directory(photo_tree, tmp_path / "a", size=(112, 96), progress=False)
    out = next((tmp_path / "a" / PEOPLE[0]).glob("*.png"))
    assert load_image(out).shape == (112, 96, 3) and r96.aligned >= 4
    loose = align_directory(
        photo_tree, tmp_path / "b", loose=True, output_format="jpg", progress=False
    )
    out = next((tmp_path / "b" / PEOPLE[0]).glob("*.jpg"))
    assert load_image(out).shape == (113, 113, 3) and loose.aligned >= 4


def test_settings_record_the_landmark_averaging(photo_tree: Path, tmp_path: Path) -> None:
    align_directory(photo_tree, tmp_path / "p", progress=False)
    settings = json.loads((tmp_path / "p" / "align_settings.json").read_text())
    assert settings["detector_options"] == {"landmarks": "onet"}
    assert settings["template"][0] == [38.2946, 51.6963]
    fast = align_directory(photo_tree, tmp_path / "f", precise=False, progress=False)
    settings = json.loads((tmp_path / "f" / "align_settings.json").read_text())
    assert settings["detector_options"] == {"landmarks": "yunet"} and fast.aligned >= 4
    with pytest.raises(DataFormatError, match="detector_options"):
        align_directory(photo_tree, tmp_path / "f", progress=False)


def test_same_stem_with_two_extensions_is_reported(data_dir, yunet_env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    photo = data_dir / "lfw" / "images" / PEOPLE[0] / f"{PEOPLE[0]}_0001.jpg"
    shutil.copy(photo, src / "face.jpg")
    Image.open(photo).save(src / "face.png")
    report = align_directory(src, tmp_path / "dst", progress=False)
    assert report.aligned == 1 and report.failed == 1
    assert "already taken" in report.problems[0].reason


def test_output_inside_the_source_is_not_realigned(photo_tree: Path) -> None:
    dst = photo_tree / "aligned"
    first = align_directory(photo_tree, dst, progress=False)
    second = align_directory(photo_tree, dst, progress=False)
    assert second.total == first.total  # the crops under SRC/aligned are not sources


@pytest.mark.slow
def test_cli_with_two_workers(photo_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    cmd = [sys.executable, "-m", "mobileface", "align", str(photo_tree), str(dst)]
    result = subprocess.run(
        [*cmd, "--workers", "2", "--policy", "central", "--json", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["workers"] == 2 and summary["failed"] == 4
    assert summary["aligned"] == summary["images"] - 4
    assert summary["failure_reasons"]  # reasons counted by kind
    single = align_directory(photo_tree, tmp_path / "one", policy="central", progress=False)
    for path in sorted(dst.glob("[A-Z]*/*.png")):
        twin = tmp_path / "one" / path.relative_to(dst)
        assert np.array_equal(load_image(path), load_image(twin))  # workers change nothing
    assert single.aligned == summary["aligned"]

    plain = subprocess.run(
        [*cmd, "--policy", "central"], capture_output=True, text=True, timeout=300
    )
    assert plain.returncode == 0
    assert "already done" in plain.stdout and "failed" in plain.stdout


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mobileface", "align", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = run(str(tmp_path), str(tmp_path / "o"), "--size", "big")
    assert result.returncode == 2 and "size must look like" in result.stderr
    result = run(str(tmp_path / "missing"), str(tmp_path / "o"))
    assert result.returncode == 1 and "not a directory" in result.stderr
    result = run(str(tmp_path), str(tmp_path / "o"), "--detector", "dlib", "--fast")
    assert result.returncode == 2 and "--fast applies to yunet only" in result.stderr
    result = run("--help")
    assert result.returncode == 0 and "--workers" in result.stdout and "--fallback" in result.stdout
