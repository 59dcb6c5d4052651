"""Detectors on real photos (YuNet on ONNX Runtime and OpenCV, dlib), model files, download."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobileface.align import (
    ARCFACE_TEMPLATE_112,
    PRECISE_YUNET,
    YUNET_FILE,
    Detector,
    YuNetDetector,
    align_image,
    create_detector,
    estimate_similarity,
    yunet_model_path,
)
from mobileface.align.yunet import YUNET_OFFSETS
from mobileface.errors import MissingDependencyError, ModelFileError, NoFaceError
from mobileface.image import load_image
from mobileface.paths import RemoteFile


@pytest.fixture(scope="module")
def yunet_file(data_dir: Path) -> Path:
    path = data_dir.parent / "models" / "yunet.onnx"
    if not path.is_file():
        pytest.skip(f"YuNet model not found at {path}")
    return path


@pytest.fixture(scope="module")
def yunet(yunet_file: Path) -> YuNetDetector:
    return YuNetDetector(yunet_file)


def _upright_landmarks_ok(landmarks: np.ndarray) -> bool:
    le, re, nose, lm, rm = landmarks
    return le[0] < re[0] and lm[0] < rm[0] and max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])


def test_yunet_finds_the_face_and_five_points_in_order(yunet: YuNetDetector, lfw_images) -> None:
    image = load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    faces = yunet.detect(image)
    assert isinstance(yunet, Detector)
    assert len(faces) >= 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert 0.6 <= face.score <= 1.0
    assert 60 < (x1 + x2) / 2 < 190 and 60 < (y1 + y2) / 2 < 190  # LFW faces are centred
    assert 60 < x2 - x1 < 160
    assert _upright_landmarks_ok(face.landmarks)
    assert all(x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5 for x, y in face.landmarks)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_yunet_landmarks_follow_the_template_convention(yunet_file: Path, data_dir: Path) -> None:
    """On crops aligned with MTCNN landmarks, YuNet points in MTCNN style sit on the template."""
    crops = sorted((data_dir / "celeba-test-112").glob("*/*.jpg"))[::97][:60]
    if len(crops) < 20:
        pytest.skip("celeba-test-112 missing")
    calibrated = YuNetDetector(yunet_file, landmarks="mtcnn")
    raw = YuNetDetector(yunet_file, landmarks="yunet")
    dev_cal, dev_raw = [], []
    for path in crops:
        image = load_image(path)
        a, b = calibrated.detect(image), raw.detect(image)
        if a and b:
            dev_cal.append(a[0].landmarks - ARCFACE_TEMPLATE_112)
            dev_raw.append(b[0].landmarks - ARCFACE_TEMPLATE_112)
    assert len(dev_cal) >= 0.9 * len(crops)
    median_cal = np.median(dev_cal, axis=0)
    median_raw = np.median(dev_raw, axis=0)
    assert np.abs(median_raw[3:, 1]).min() > 3  # YuNet's raw mouth corners sit high
    assert np.abs(median_cal).max() < 1.5
    assert np.allclose(median_raw - median_cal, YUNET_OFFSETS, atol=1.0)


def test_yunet_handles_a_large_photo_like_a_small_one(yunet: YuNetDetector, lfw_images) -> None:
    import cv2

    small = load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    # A 1,600 px "phone photo": the face upscaled 4x inside a larger grey frame.
    big = np.full((1600, 1400, 3), 90, np.uint8)
    up = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    big[300:1300, 200:1200] = up
    f_small = yunet.detect(small)[0]
    f_big = yunet.detect(big)[0]
    mapped = (f_big.landmarks - [200, 300] + 0.5) / 4 - 0.5
    # YuNet's points jitter by about 5% of the eye distance when the scale changes
    eye_distance = np.linalg.norm(f_small.landmarks[1] - f_small.landmarks[0])
    assert np.abs(mapped - f_small.landmarks).mean() < 0.06 * eye_distance
    assert np.abs(mapped - f_small.landmarks).max() < 0.15 * eye_distance
    precise = YuNetDetector(yunet.model_path, **PRECISE_YUNET)
    crop_small, _ = align_image(small, precise)
    crop_big, _ = align_image(big, precise)
    assert np.abs(crop_small.astype(int) - crop_big.astype(int)).mean() < 9


def test_onnxruntime_and_opencv_backends_find_the_same_faces(yunet_file: Path, data_dir) -> None:
    """The default ONNX Runtime backend decodes YuNet exactly as cv2.FaceDetectorYN does."""
    from mobileface.image import load_image

    fast = YuNetDetector(yunet_file)
    reference = YuNetDetector(yunet_file, backend="opencv")
    assert fast.backend == "onnxruntime"
    photos = sorted((data_dir / "lfw" / "images").glob("*/*.jpg"))[::400]
    group = np.concatenate([load_image(p) for p in photos[:3]], axis=1)  # several faces
    for image in [load_image(p) for p in photos] + [group]:
        a, b = fast.detect(image), reference.detect(image)
        assert len(a) == len(b) >= 1
        for x, y in zip(a, b, strict=True):
            assert np.abs(x.box - y.box).max() < 1e-3
            assert np.abs(x.landmarks - y.landmarks).max() < 1e-3
            assert abs(x.score - y.score) < 1e-4


def test_unknown_backend_is_refused(yunet_file: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        YuNetDetector(yunet_file, backend="tflite")


def test_no_face_gives_a_typed_error(yunet: YuNetDetector) -> None:
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert yunet.detect(blank) == []
    with pytest.raises(NoFaceError, match="no face detected by yunet"):
        align_image(blank, yunet)


def test_policy_picks_between_several_faces(yunet: YuNetDetector, lfw_images) -> None:
    a = load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    import cv2

    small = cv2.resize(a, (150, 150), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 700, 3), 100, np.uint8)
    canvas[25:275, 20:270] = a  # big face on the left
    canvas[75:225, 400:550] = small  # smaller face nearer the centre (centre x = 350)
    faces = yunet.detect(canvas)
    assert len(faces) == 2
    _, largest = align_image(canvas, yunet, policy="largest")
    _, central = align_image(canvas, yunet, policy="central")
    assert largest.center[0] < 270 < 400 < central.center[0]


def test_create_detector_by_name(yunet_file: Path) -> None:
    detector = create_detector("yunet", model_path=yunet_file)
    assert detector.name == "yunet"
    with pytest.raises(ValueError, match="unknown detector 'mtcnn2'"):
        create_detector("mtcnn2")


@pytest.fixture
def no_bundled_yunet(monkeypatch, tmp_path: Path) -> None:
    """As in a slim build without the package's own copy of YuNet."""
    import mobileface.align.yunet as yunet_module

    monkeypatch.setattr(yunet_module, "BUNDLED_DIR", tmp_path / "no-assets")


def test_the_package_ships_yunet(monkeypatch, tmp_path: Path) -> None:
    """An installed package finds its own copy: no environment, cache, data or network."""
    from mobileface.paths import sha256_of

    for name in ("MOBILEFACE_YUNET", "MOBILEFACE_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOBILEFACE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)
    path = yunet_model_path(download=False)
    assert path.parent.name == "assets" and sha256_of(path) == YUNET_FILE.sha256
    assert "MIT License" in (path.parent / "YUNET_LICENSE").read_text()


def test_default_model_is_found_beside_the_data(
    yunet_file: Path, monkeypatch, tmp_path, no_bundled_yunet
) -> None:
    monkeypatch.delenv("MOBILEFACE_YUNET", raising=False)
    monkeypatch.setenv("MOBILEFACE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MOBILEFACE_DATA", str(yunet_file.parent.parent / "data"))
    assert yunet_model_path(download=False).resolve() == yunet_file.resolve()


def test_model_resolution_order(
    yunet_file: Path, monkeypatch, tmp_path: Path, no_bundled_yunet
) -> None:
    monkeypatch.setenv("MOBILEFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOBILEFACE_DATA", str(tmp_path / "nowhere" / "data"))
    monkeypatch.delenv("MOBILEFACE_YUNET", raising=False)
    with pytest.raises(ModelFileError, match="yunet.onnx not found"):
        yunet_model_path(download=False)
    env_copy = tmp_path / "env.onnx"
    shutil.copy(yunet_file, env_copy)
    monkeypatch.setenv("MOBILEFACE_YUNET", str(env_copy))
    assert yunet_model_path() == env_copy
    assert yunet_model_path(yunet_file) == yunet_file  # explicit beats the environment
    monkeypatch.setenv("MOBILEFACE_YUNET", str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelFileError, match="MOBILEFACE_YUNET"):
        yunet_model_path()


def test_download_from_a_file_url_checks_the_hash(
    yunet_file: Path, monkeypatch, tmp_path: Path, no_bundled_yunet
) -> None:
    served = tmp_path / "served" / "face_detection_yunet.onnx"
    served.parent.mkdir()
    shutil.copy(yunet_file, served)
    monkeypatch.setenv("MOBILEFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOBILEFACE_DATA", str(tmp_path / "nowhere" / "data"))
    monkeypatch.delenv("MOBILEFACE_YUNET", raising=False)
    remote = RemoteFile(YUNET_FILE.filename, served.as_uri(), YUNET_FILE.sha256, "MOBILEFACE_YUNET")
    path = yunet_model_path(remote=remote)
    assert path == tmp_path / "cache" / "yunet.onnx" and path.is_file()
    assert YuNetDetector(path).model_path == path

    bad = RemoteFile("other.onnx", served.as_uri(), "0" * 64, "MOBILEFACE_YUNET")
    with pytest.raises(ModelFileError, match="does not match the pinned"):
        yunet_model_path(remote=bad)
    assert not (tmp_path / "cache" / "other.onnx").exists()
    leftovers = [p.name for p in (tmp_path / "cache").iterdir()]
    assert leftovers == ["yunet.onnx"]


def test_a_corrupt_model_file_is_a_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelFileError, match=r"broken\.onnx"):
        YuNetDetector(broken)


def test_aligned_crop_of_a_real_photo_matches_a_reference_crop(yunet, lfw_images) -> None:
    """Two photos of one person, aligned, agree far better than the originals' raw pixels."""
    image = load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    crop, face = align_image(image, yunet)
    assert crop.shape == (112, 112, 3)
    # the detected points land near the template after alignment
    matrix = estimate_similarity(face.landmarks, ARCFACE_TEMPLATE_112)
    landed = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    # within a few pixels (ONet's nose tip sits about 3 px below the template's on average)
    assert np.abs(landed - ARCFACE_TEMPLATE_112).max() < 6


@pytest.fixture(scope="module")
def dlib_detector():
    try:
        return create_detector("dlib")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_dlib_backend_maps_onto_the_same_five_points(dlib_detector, yunet, lfw_images) -> None:
    names = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0001.jpg"]
    for name in names:
        path = lfw_images / name
        if not path.is_file():
            continue
        image = load_image(path)
        faces = dlib_detector.detect(image)
        assert faces, f"dlib found no face in {name}"
        ours = faces[0].landmarks
        assert _upright_landmarks_ok(ours)
        theirs = yunet.detect(image)[0].landmarks
        eye_distance = np.linalg.norm(theirs[1] - theirs[0])
        # same points, within a fraction of the eye distance
        assert np.abs(ours - theirs).max() < 0.25 * eye_distance


def test_importing_align_and_data_does_not_import_torch() -> None:
    code = (
        "import sys, mobileface.align, mobileface.align.batch, mobileface.data, "
        "mobileface.image, mobileface.cli.align_cmd; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_flip_and_scale_averaging_keep_order_and_steady_points(
    yunet_file: Path, lfw_images
) -> None:
    import cv2

    image = load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    plain = YuNetDetector(yunet_file, flip_average=False)
    steady = YuNetDetector(yunet_file, flip_average=True, extra_scales=(0.8, 1.25))
    a, b = plain.detect(image)[0], steady.detect(image)[0]
    assert _upright_landmarks_ok(b.landmarks)
    eye_distance = np.linalg.norm(a.landmarks[1] - a.landmarks[0])
    assert np.abs(a.landmarks - b.landmarks).max() < 0.15 * eye_distance
    # a mirrored photo gives the mirrored points (left and right swapped back)
    mirrored = steady.detect(np.ascontiguousarray(image[:, ::-1]))[0].landmarks
    unmirrored = mirrored[[1, 0, 2, 4, 3]] * [-1, 1] + [image.shape[1] - 1, 0]
    assert np.abs(unmirrored - b.landmarks).max() < 0.08 * eye_distance

    # steadier under rescaling than single-view detection
    def drift(detector) -> float:
        base = detector.detect(image)[0].landmarks
        out = []
        for s in (0.9, 1.1):
            scaled = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            pts = (detector.detect(scaled)[0].landmarks + 0.5) * image.shape[1] / scaled.shape[1]
            out.append(np.abs(pts - 0.5 - base).mean())
        return float(np.mean(out))

    assert drift(steady) < 0.06 * eye_distance
    with pytest.raises(ValueError, match="extra_scales"):
        YuNetDetector(yunet_file, extra_scales=(10.0,))
    with pytest.raises(ValueError, match="landmarks must be one of"):
        YuNetDetector(yunet_file, landmarks="dlib")


def _largest(faces):
    return max(faces, key=lambda f: f.area)


def _big_photos(small: np.ndarray) -> dict[str, np.ndarray]:
    """1280x720 photos made from a 250x250 LFW one: placed at its size, and scaled 2.88x."""
    import cv2

    placed = np.full((720, 1280, 3), 110, np.uint8)
    placed[235:485, 515:765] = small
    scaled = np.full((720, 1280, 3), 110, np.uint8)
    scaled[:, 280:1000] = cv2.resize(small, (720, 720), interpolation=cv2.INTER_CUBIC)
    return {"placed": placed, "scaled": scaled}


@pytest.mark.parametrize("person", ["Aaron_Eckhart", "Aaron_Peirsol", "AJ_Cook"])
def test_shrunk_search_maps_faces_back_onto_full_size_detection(
    yunet: YuNetDetector, lfw_images, person: str
) -> None:
    """verify's detector searches shrunk copies and measures small faces again at full size:
    the faces, boxes and landmarks of a full-size detection, within a few pixels."""
    from mobileface.align.yunet import DETECT_SIDES

    fast = YuNetDetector(yunet.model_path, detect_sides=DETECT_SIDES)
    small = load_image(lfw_images / person / f"{person}_0001.jpg")
    for name, image in {"250x250": small, **_big_photos(small)}.items():
        full, shrunk = _largest(yunet.detect(image)), _largest(fast.detect(image))
        eye_distance = np.linalg.norm(full.landmarks[1] - full.landmarks[0])
        error = np.abs(shrunk.landmarks - full.landmarks)
        assert _upright_landmarks_ok(shrunk.landmarks), name
        # YuNet's points move by about 5% of the eye distance from one view to another
        assert error.mean() < 0.06 * eye_distance and error.max() < 0.15 * eye_distance, name
        assert np.abs(shrunk.box - full.box).max() < 0.1 * (full.box[2] - full.box[0]), name


def test_shrunk_search_falls_back_to_the_whole_photo_for_a_small_face(
    yunet: YuNetDetector, lfw_images
) -> None:
    """A face too small to show in any shrunk copy is still found, by the full-size search."""
    import cv2

    from mobileface.align.yunet import DETECT_SIDES

    fast = YuNetDetector(yunet.model_path, detect_sides=DETECT_SIDES)
    small = load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    tiny = cv2.resize(small, (70, 70), interpolation=cv2.INTER_AREA)  # face box about 35 px
    photo = np.full((1080, 1920, 3), 110, np.uint8)
    photo[500:570, 900:970] = tiny
    full, shrunk = yunet.detect(photo), fast.detect(photo)
    assert len(full) >= 1 and len(shrunk) >= 1
    assert np.abs(_largest(full).landmarks - _largest(shrunk).landmarks).max() < 1e-3
    assert fast.detect(np.full((720, 1280, 3), 110, np.uint8)) == []
    with pytest.raises(ValueError, match="at least 32 pixels"):
        YuNetDetector(yunet.model_path, detect_sides=(16,))


def test_shrunk_copies_keep_the_pixel_centre_mapping() -> None:
    """Level pixel q = (p + 0.5) * f - 0.5 for photo pixel p, odd sizes and last step included."""
    from mobileface.align.yunet import _halvings, _shrunk

    photo = np.zeros((725, 1283, 3), np.uint8)
    point = np.array([901.0, 402.0])  # centre of a bright 9x9 square
    photo[398:407, 897:906] = 255
    for side in (160, 480, 1000):
        image, fx, fy = _shrunk(_halvings(photo, 160), side)[-1]
        assert max(image.shape[:2]) == side
        gray = image[..., 0].astype(float)
        yy, xx = np.indices(gray.shape)
        found = np.array([(gray * xx).sum(), (gray * yy).sum()]) / gray.sum()
        expected = (point + 0.5) * [fx, fy] - 0.5
        assert np.abs(found - expected).max() < 0.15, side  # pixels of the copy
