"""ONet's second landmark pass on real photos, the shipped model file, and the face policy."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobileface.align import (
    DEFAULT_POLICY,
    Face,
    YuNetDetector,
    align_image,
    select_face,
)
from mobileface.align.onet import BUNDLED_ONET, ONET_SHA256, OnetRefiner, onet_model_path
from mobileface.errors import ModelFileError
from mobileface.image import load_image

MIRROR = [1, 0, 2, 4, 3]


@pytest.fixture(scope="module")
def photo(lfw_images: Path) -> np.ndarray:
    return load_image(lfw_images / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")


@pytest.fixture(scope="module")
def raw_yunet() -> YuNetDetector:
    return YuNetDetector(landmarks="yunet")


@pytest.fixture(scope="module")
def refiner() -> OnetRefiner:
    return OnetRefiner()


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[1] - points[0]))


def _upright(points: np.ndarray) -> bool:
    le, re, nose, lm, rm = points
    return le[0] < re[0] and lm[0] < rm[0] and max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])


def test_the_package_ships_onet_with_its_licence() -> None:
    assert onet_model_path() == BUNDLED_ONET
    assert hashlib.sha256(BUNDLED_ONET.read_bytes()).hexdigest() == ONET_SHA256
    notice = (BUNDLED_ONET.parent / "MTCNN_LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in notice and ONET_SHA256 in notice and "convert_onet.py" in notice


def test_onet_measures_the_points_again_near_yunets(raw_yunet, refiner, photo) -> None:
    face = raw_yunet.detect(photo)[0]
    refined = refiner.refine(photo, [face])[0]
    assert _upright(refined.landmarks)
    assert np.array_equal(refined.box, face.box) and refined.score == face.score
    eye = _eye_distance(face.landmarks)
    moved = np.linalg.norm(refined.landmarks - face.landmarks, axis=1)
    assert moved.max() < 0.2 * eye  # the same points...
    assert moved.max() > 0.01 * eye  # ...measured again, not copied


def test_mirrored_photo_gives_mirrored_points(raw_yunet, refiner, photo) -> None:
    a = refiner.refine(photo, raw_yunet.detect(photo)[:1])[0].landmarks
    mirror = np.ascontiguousarray(photo[:, ::-1])
    b = refiner.refine(mirror, raw_yunet.detect(mirror)[:1])[0].landmarks
    back = b[MIRROR] * [-1, 1] + [photo.shape[1] - 1, 0]
    assert np.abs(back - a).max() < 0.05 * _eye_distance(a)


def test_yunet_uses_onet_by_default(raw_yunet, photo) -> None:
    default = YuNetDetector()
    assert default.landmark_style == "onet"
    a, b = default.detect(photo)[0], raw_yunet.detect(photo)[0]
    assert np.abs(a.box - b.box).max() < 1e-3
    assert not np.allclose(a.landmarks, b.landmarks)


def test_face_cut_by_the_frame_and_non_face_box(raw_yunet, refiner, photo) -> None:
    face = raw_yunet.detect(photo)[0]
    left = int(face.box[0]) + 25  # the new left edge cuts through the face's left part
    cut = np.ascontiguousarray(photo[:, left:])
    moved = Face(face.box - [left, 0, left, 0], face.score, face.landmarks - [left, 0])
    out = refiner.refine(cut, [moved])[0]  # ONet sees black where the photo ends
    assert np.isfinite(out.landmarks).all()
    assert np.abs(out.landmarks - moved.landmarks).max() < 0.3 * _eye_distance(face.landmarks)
    # a box on a blank wall: ONet sees no face there and the detector's points are kept
    blank = np.full((200, 200, 3), 128, np.uint8)
    fake = Face([50, 50, 150, 150], 0.7, [[80, 90], [120, 90], [100, 110], [85, 130], [115, 130]])
    assert refiner.refine(blank, [fake])[0] is fake
    assert refiner.refine(blank, []) == []


def test_bad_settings_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_prob"):
        OnetRefiner(min_prob=1.5)
    with pytest.raises(ModelFileError, match="not found"):
        OnetRefiner(tmp_path / "missing.onnx")
    yunet_file = Path(YuNetDetector(landmarks="yunet").model_path)
    with pytest.raises(ModelFileError, match="not an ONet model"):
        OnetRefiner(yunet_file)


def _group(lfw_images: Path, sizes: list[int], width: int = 900) -> np.ndarray:
    """LFW photos resized to ``sizes`` side by side on a grey canvas, centred vertically."""
    import cv2

    names = ["Aaron_Eckhart", "Aaron_Peirsol", "AJ_Cook"]
    canvas = np.full((max(sizes) + 40, width, 3), 100, np.uint8)
    x = (width - sum(sizes)) // 2
    for name, size in zip(names, sizes, strict=True):
        image = load_image(lfw_images / name / f"{name}_0001.jpg")
        y = (canvas.shape[0] - size) // 2
        canvas[y : y + size, x : x + size] = cv2.resize(image, (size, size))
        x += size
    return canvas


def test_prominent_policy_in_group_shots(raw_yunet, lfw_images: Path) -> None:
    assert DEFAULT_POLICY == "prominent"
    even = _group(lfw_images, [250, 250, 250])  # three alike: the middle one
    faces = raw_yunet.detect(even)
    assert len(faces) == 3
    chosen = select_face(faces, "prominent", even.shape)
    assert 350 < chosen.center[0] < 550
    big_left = _group(lfw_images, [400, 180, 180], width=1000)  # one face much larger: it
    faces = raw_yunet.detect(big_left)
    assert select_face(faces, "prominent", big_left.shape).center[0] < 400
    assert select_face(faces, "central", big_left.shape).center[0] > 400
    _, face = align_image(even, raw_yunet)  # the default policy
    assert face.center[0] == chosen.center[0]


def test_prominent_policy_passes_over_a_face_cut_by_the_frame(raw_yunet, photo) -> None:
    """LFW's case: a bystander cut by the frame, a little larger than the centred subject."""
    h, w = photo.shape[:2]
    subject = Face([w / 2 - 50, h / 2 - 55, w / 2 + 50, h / 2 + 55], 0.92, np.zeros((5, 2)))
    bystander = Face([w - 40, 20, w + 80, 150], 0.9, np.zeros((5, 2)))  # 120 px, half outside
    for faces in ([subject, bystander], [bystander, subject]):
        assert select_face(faces, "prominent", photo.shape) is subject
        assert select_face(faces, "largest", photo.shape) is bystander
    with pytest.raises(ValueError, match="needs the image shape"):
        select_face([subject], "prominent")


def test_importing_onet_does_not_import_torch() -> None:
    code = "import sys, mobileface.align.onet; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_verify_aligns_on_yunets_points_unless_asked() -> None:
    """``mobileface verify``'s detector: YuNet's points (its speed budget); ``--landmarks onet``
    adds ONet's pass on the photo alone, without the mirror."""
    import argparse

    from mobileface.align.yunet import DETECT_SIDES
    from mobileface.cli.verify_cmd import detector_for

    args = argparse.Namespace(detector="yunet", detect_sides=DETECT_SIDES)
    default = detector_for(args)
    assert default.landmark_style == "yunet" and default.detect_sides == DETECT_SIDES
    onet = detector_for(argparse.Namespace(**vars(args), landmarks="onet"))
    assert onet.landmark_style == "onet" and onet._onet.flip is False
