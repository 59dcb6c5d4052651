"""Faces in bad light (issue 17): the relit test set, the detector's low-light pass, and
grayscale photos through the Python API, the CLI and the REST service.

Real photos (LFW), the real YuNet, real files on disk, a real ``mobileface serve``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from gallery_helpers import Server, export_test_model
from mobileface.align import Face, YuNetDetector, create_detector
from mobileface.align.lighting import (
    FOUND_BY_LOW_LIGHT,
    FOUND_BY_PHOTO,
    restore_contrast,
    to_photo,
    working_copy,
)
from mobileface.evaluation.relight import (
    Lighting,
    image_rng,
    relight,
    relight_folder,
    sample_lighting,
)
from mobileface.image import load_image

REPO = Path(__file__).resolve().parents[1]
PHOTO = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
NIGHT = Lighting(
    angle=0.0,
    floor=0.1,
    sharpness=6.0,
    gamma=1.5,
    exposure=0.2,
    read_noise=0.02,
    shot_noise=0.02,
    gray=True,
    jpeg_quality=90,
)
"""Light from image-right, the left side at a tenth, exposure a fifth, noisy, gray: YuNet's
first pass finds no face in :data:`PHOTO` lit so (checked below, not assumed)."""


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> np.ndarray:
    path = data_dir / "lfw" / "images" / PHOTO
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return load_image(path)


@pytest.fixture(scope="module")
def night(photo: np.ndarray) -> np.ndarray:
    """:data:`PHOTO` at night, as the RGB array a gray file decodes to."""
    gray = relight(photo, NIGHT, np.random.default_rng(0))
    assert gray.ndim == 2
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


@pytest.fixture(scope="module")
def detectors() -> dict[str, YuNetDetector]:
    return {
        "before": create_detector("yunet", low_light=False),
        "after": create_detector("yunet"),
    }


def _iod_error(face: Face, reference: Face) -> float:
    """Mean landmark distance in inter-ocular distances of ``reference``."""
    iod = float(np.linalg.norm(reference.landmarks[0] - reference.landmarks[1]))
    return float(np.linalg.norm(face.landmarks - reference.landmarks, axis=1).mean()) / iod


# -- the relit set ------------------------------------------------------------------------------


def test_lighting_is_seeded_per_image_and_covers_the_ranges() -> None:
    a = sample_lighting(image_rng(17, "A/A_0001.jpg"))
    assert a == sample_lighting(image_rng(17, "A/A_0001.jpg"))
    assert a != sample_lighting(image_rng(18, "A/A_0001.jpg"))
    drawn = [sample_lighting(image_rng(17, f"{i}")) for i in range(400)]
    gammas = np.array([d.gamma for d in drawn])
    assert 0.2 <= gammas.min() < 0.3 and 2.5 < gammas.max() <= 3.0
    assert 0.6 < np.mean([d.gray for d in drawn]) < 0.9


def test_relight_darkens_one_side_and_keeps_the_geometry(photo: np.ndarray) -> None:
    lit = relight(photo, replace(NIGHT, read_noise=0.0, shot_noise=0.0), np.random.default_rng(1))
    assert lit.shape == photo.shape[:2] and lit.dtype == np.uint8
    left, right = lit[:, :80].mean(), lit[:, -80:].mean()
    assert left < 0.5 * right  # light from image-right
    assert lit.mean() < 0.4 * photo.mean()
    colour = relight(photo, replace(NIGHT, gray=False), np.random.default_rng(1))
    assert colour.shape == photo.shape
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        relight(photo[:, :, 0], NIGHT, np.random.default_rng(0))


def test_relight_folder_is_reproducible_and_writes_gray_jpegs(
    data_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    src = data_dir / "lfw" / "images"
    names = [PHOTO, "AJ_Cook/AJ_Cook_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg"]
    first = relight_folder(src, tmp_path / "a", names, seed=17)
    again = relight_folder(src, tmp_path / "b", list(reversed(names)), seed=17)
    assert first["images"] == again["images"] and set(first["images"]) == set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        with Image.open(tmp_path / "a" / name) as img:
            assert img.mode == ("L" if first["images"][name]["gray"] else "RGB")
    manifest = json.loads((tmp_path / "a" / "relight.json").read_text())
    assert manifest["seed"] == 17 and set(manifest["images"]) == set(names)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        relight_folder(tmp_path / "nowhere", tmp_path / "c")


def test_relight_cli_builds_a_set_from_a_pair_list(data_dir: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nAaron_Peirsol\t1\t2\nAaron_Peirsol\t1\tAJ_Cook\t1\n")
    out = tmp_path / "relit"
    done = subprocess.run(
        [sys.executable, "-m", "mobileface.evaluation.relight", str(data_dir / "lfw" / "images"),
         str(out), "--pairs", str(pairs)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 photos relit" in done.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "AJ_Cook/AJ_Cook_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "mobileface.evaluation.relight", str(tmp_path / "nowhere"),
         str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert bad.returncode == 1 and "nowhere: no such folder" in bad.stderr


# -- the low-light pass -------------------------------------------------------------------------


def test_restore_contrast_brightens_and_keeps_gray_gray(night: np.ndarray) -> None:
    restored = restore_contrast(night)
    assert restored.shape == night.shape and restored.dtype == np.uint8
    assert restored.mean() > 1.5 * night.mean()
    assert restored.std() > 1.5 * night.std()
    assert np.array_equal(restored[..., 0], restored[..., 1])  # gray in, gray out
    assert np.array_equal(restored[..., 1], restored[..., 2])


def test_working_copy_and_mapping_back() -> None:
    big = np.zeros((1500, 2560, 3), np.uint8)
    copy, factor = working_copy(big, 1280)
    assert copy.shape == (750, 1280, 3) and factor == pytest.approx(0.5, rel=1e-9)
    small = np.zeros((250, 250, 3), np.uint8)
    assert working_copy(small, 1280) == (small, 1.0)
    face = Face([10, 20, 110, 140], 0.9, [[40, 60], [80, 60], [60, 90], [45, 110], [75, 110]])
    back = to_photo(face, 0.5, FOUND_BY_LOW_LIGHT)
    assert back.found_by == FOUND_BY_LOW_LIGHT and back.score == face.score
    np.testing.assert_allclose(back.box, np.asarray(face.box) * 2, rtol=1e-6)
    np.testing.assert_allclose(back.landmarks, (face.landmarks + 0.5) * 2 - 0.5, rtol=1e-6)
    assert face.found_by == FOUND_BY_PHOTO
    assert face.to_dict()["found_by"] == "photo" and face.scaled(2.0).found_by == "photo"
    assert back.scaled(0.5).found_by == FOUND_BY_LOW_LIGHT


def test_low_light_pass_finds_the_face_the_first_pass_misses(
    photo: np.ndarray, night: np.ndarray, detectors: dict
) -> None:
    assert detectors["before"].detect(night) == []
    found = detectors["after"].detect(night)
    assert len(found) == 1 and found[0].found_by == FOUND_BY_LOW_LIGHT
    reference = detectors["before"].detect(photo)[0]
    assert _iod_error(found[0], reference) < 0.25  # the same face, landmarks close to the truth


def test_low_light_landmarks_map_back_from_a_large_photo(
    photo: np.ndarray, night: np.ndarray, detectors: dict
) -> None:
    # The night photo placed, at twice its size, in a 2560x1600 frame: searched on a copy half
    # as large; the face must come back in the frame's own pixels.
    import cv2

    frame = np.zeros((1600, 2560, 3), np.uint8)
    frame[300:800, 1000:1500] = cv2.resize(night, (500, 500), interpolation=cv2.INTER_LINEAR)
    assert detectors["before"].detect(frame) == []
    found = detectors["after"].detect(frame)
    assert found and found[0].found_by == FOUND_BY_LOW_LIGHT
    reference = detectors["before"].detect(photo)[0]
    truth = Face(
        np.asarray(reference.box) * 2 + [1000, 300, 1000, 300],
        reference.score,
        (reference.landmarks + 0.5) * 2 - 0.5 + [1000, 300],
    )
    assert _iod_error(found[0], truth) < 0.3


def test_the_low_light_pass_never_runs_when_the_first_pass_finds_a_face(
    photo: np.ndarray, detectors: dict
) -> None:
    class Counting(YuNetDetector):
        passes = 0

        def _detect_pass(self, image_rgb):
            Counting.passes += 1
            return super()._detect_pass(image_rgb)

    counting = Counting()
    faces = counting.detect(photo)
    assert Counting.passes == 1 and faces[0].found_by == FOUND_BY_PHOTO
    before = detectors["before"].detect(photo)
    np.testing.assert_array_equal(faces[0].landmarks, before[0].landmarks)
    blank = np.full((200, 200, 3), 128, np.uint8)
    assert counting.detect(blank) == [] and Counting.passes == 3  # no face: both passes ran


# -- grayscale photos everywhere ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gray_files(data_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """Two LFW photos of one person and one of another as 1-channel JPEG and PNG files."""
    from PIL import Image

    lfw = data_dir / "lfw" / "images"
    root = tmp_path_factory.mktemp("gray")
    out = {}
    for key, name, fmt in (
        ("a1", PHOTO, "jpg"),
        ("a2", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg", "png"),
        ("b1", "AJ_Cook/AJ_Cook_0001.jpg", "jpg"),
    ):
        with Image.open(lfw / name) as img:
            gray = img.convert("L")
        path = root / f"{key}.{fmt}"
        gray.save(path)
        with Image.open(path) as check:
            assert check.mode == "L"  # a real 1-channel file
        out[key] = path
    return out


def test_gray_files_decode_to_rgb(gray_files: dict[str, Path]) -> None:
    for path in gray_files.values():
        image = load_image(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert np.array_equal(image[..., 0], image[..., 2])
        assert load_image(path.read_bytes(), name=path.name).shape == image.shape


def test_gray_photos_through_the_python_api(gray_files: dict[str, Path], tmp_path: Path) -> None:
    from mobileface.runtime import FaceVerifier, open_embedder

    model = export_test_model(tmp_path)
    verifier = FaceVerifier(open_embedder(model), threshold=0.5)
    same = verifier.verify(gray_files["a1"], gray_files["a1"].read_bytes())
    assert same.score == pytest.approx(1.0, abs=1e-4) and same.same is True
    assert [f.found_by for f in same.faces] == ["photo", "photo"]
    other = verifier.verify(gray_files["a1"], gray_files["a2"])  # JPEG beside PNG
    assert -1.0 <= other.score < 1.0
    gray_array = load_image(gray_files["b1"])[:, :, 0]  # H x W arrays are gray photos too
    for array in (gray_array, gray_array[:, :, None]):
        vector, face = verifier.embed_image(array)
        assert vector.shape == (verifier.embedder.embedding_size,) and face.found_by == "photo"


def test_gray_photos_through_the_cli(gray_files: dict[str, Path], tmp_path: Path) -> None:
    model = export_test_model(tmp_path)
    env = {**os.environ, "MOBILEFACE_DATA": str(REPO.parent / "shared" / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "mobileface", "verify", str(gray_files["a1"]),
         str(gray_files["a2"]), "-m", str(model), "--threshold", "0.5", "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [f["found_by"] for f in out["faces"]] == ["photo", "photo"]


def test_gray_and_night_photos_through_the_service(
    gray_files: dict[str, Path], night: np.ndarray, data_dir: Path, tmp_path: Path
) -> None:
    import cv2

    ok, night_jpeg = cv2.imencode(".jpg", night[:, :, 0], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    a1, a2, b1 = (gray_files[k].read_bytes() for k in ("a1", "a2", "b1"))
    model = export_test_model(tmp_path)
    with (
        Server(tmp_path / "gallery.db", model, data_dir, log=tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        files = {"image_a": ("a1.jpg", a1, "image/jpeg"), "image_b": ("a2.png", a2, "image/png")}
        verified = client.post("/v1/verify", files=files)
        assert verified.status_code == 200, verified.text
        faces = verified.json()["faces"]
        assert faces["image_a"]["found_by"] == faces["image_b"]["found_by"] == "photo"
        embedded = client.post("/v1/embed", files={"image": ("b1.jpg", b1)})
        assert embedded.status_code == 200, embedded.text
        assert embedded.json()["face"]["found_by"] == "photo"
        enrolled = client.post(
            "/v1/persons", data={"name": "Aaron Peirsol"}, files=[("images", ("a1.jpg", a1))]
        )
        assert enrolled.status_code == 201, enrolled.text
        found = client.post("/v1/identify", files={"image": ("a1.jpg", a1)})
        assert found.status_code == 200, found.text
        assert found.json()["matches"][0]["name"] == "Aaron Peirsol"
        dark = client.post("/v1/embed", files={"image": ("night.jpg", night_jpeg.tobytes())})
        assert dark.status_code == 200, dark.text
        assert dark.json()["face"]["found_by"] == FOUND_BY_LOW_LIGHT


# -- the crop before embedding, and the evaluation pipeline --------------------------------------


def test_normalise_crop_restores_dark_crops_only(
    photo: np.ndarray, night: np.ndarray, detectors: dict
) -> None:
    from mobileface.align import align_face
    from mobileface.align.lighting import is_dark_crop, normalise_crop

    face = detectors["before"].detect(photo)[0]
    ordinary = align_face(photo, face.landmarks)
    assert not is_dark_crop(ordinary) and normalise_crop(ordinary) is ordinary
    dark = align_face(night, face.landmarks)
    assert is_dark_crop(dark)
    restored = normalise_crop(dark)
    assert restored.shape == dark.shape and restored.dtype == np.uint8
    assert restored.mean() > 1.5 * dark.mean() and restored.std() > dark.std()


def test_verifier_restores_dark_crops_unless_told_not_to(
    night: np.ndarray, detectors: dict, tmp_path: Path
) -> None:
    from mobileface.runtime import FaceVerifier, open_embedder

    embedder = open_embedder(export_test_model(tmp_path))
    on = FaceVerifier(embedder, detectors["after"], threshold=0.5)
    off = FaceVerifier(embedder, detectors["after"], threshold=0.5, crop_norm=False)
    face = on.find_face(night)
    assert face.found_by == FOUND_BY_LOW_LIGHT
    assert on.align(night, face).mean() > 1.5 * off.align(night, face).mean()


def test_the_cache_key_names_the_low_light_pass_and_the_crop_normalisation() -> None:
    from mobileface.evaluation.pipeline import EmbedOptions

    now, before = EmbedOptions(), EmbedOptions(low_light=False, crop_norm=False)
    assert now.detector_options()["low_light"] is True
    assert before.detector_options()["low_light"] is False
    assert now.key() != before.key() and "crop_norm" not in before.key()
    assert EmbedOptions(crop_norm=False).key() != now.key()


def test_eval_counts_fewer_photos_without_a_face_with_the_low_light_pass(
    data_dir: Path, tmp_path: Path
) -> None:
    import cv2

    lfw = data_dir / "lfw" / "images"
    names = [f"Aaron_Peirsol/Aaron_Peirsol_000{i}.jpg" for i in (1, 2, 3, 4)]
    for name in [*names, "AJ_Cook/AJ_Cook_0001.jpg"]:
        gray = relight(load_image(lfw / name), NIGHT, np.random.default_rng(0))
        (tmp_path / "night" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "night" / name), gray)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "2\nAaron_Peirsol\t1\t2\nAaron_Peirsol\t3\t4\n"
        "Aaron_Peirsol\t1\tAJ_Cook\t1\nAaron_Peirsol\t3\tAJ_Cook\t1\n"
    )
    model = export_test_model(tmp_path)
    env = {**os.environ, "MOBILEFACE_DATA": str(data_dir)}
    out = {}
    for label, extra in (("before", ["--no-low-light", "--no-crop-norm"]), ("after", [])):
        done = subprocess.run(
            [sys.executable, "-m", "mobileface", "eval", "-m", str(model), "--pairs", str(pairs),
             "--images", str(tmp_path / "night"), "--no-cache", "--no-progress", "--json",
             *extra],
            capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out[label] = json.loads(done.stdout)
    assert out["before"]["detector_options"]["low_light"] is False
    assert out["after"]["detector_options"]["low_light"] is True
    assert (out["before"]["crop_norm"], out["after"]["crop_norm"]) == (False, True)
    assert out["after"]["no_face_images"] < out["before"]["no_face_images"]
