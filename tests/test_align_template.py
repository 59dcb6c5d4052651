"""Alignment geometry by known answers: templates, the similarity fit, warps and crops."""

from __future__ import annotations

import numpy as np
import pytest

from mobileface.align import (
    ARCFACE_TEMPLATE_112,
    CENTERED_FACE_POINTS,
    Face,
    align_face,
    center_crop,
    estimate_similarity,
    loose_crop,
    parse_size,
    select_face,
    template_for,
)
from mobileface.align.template import convert_landmarks
from mobileface.errors import NoFaceError


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, [[tx], [ty]]])


def test_arcface_template_is_the_standard_one() -> None:
    assert ARCFACE_TEMPLATE_112.shape == (5, 2)
    assert ARCFACE_TEMPLATE_112[0].tolist() == pytest.approx([38.2946, 51.6963], abs=1e-4)
    assert ARCFACE_TEMPLATE_112[4].tolist() == pytest.approx([70.7299, 92.2041], abs=1e-4)
    # image-left eye first, mouth below the nose below the eyes
    t = ARCFACE_TEMPLATE_112
    assert t[0, 0] < t[1, 0] and t[3, 0] < t[4, 0]
    assert t[:2, 1].max() < t[2, 1] < t[3:, 1].min()


def test_templates_for_other_sizes() -> None:
    t96 = template_for((112, 96))
    assert np.allclose(t96, ARCFACE_TEMPLATE_112 - [8, 0])
    sq96 = template_for((96, 96))
    assert np.allclose(sq96, ARCFACE_TEMPLATE_112 * 96 / 112, atol=1e-4)
    assert np.allclose(template_for((112, 112)), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError):
        template_for((2, 2))


def test_parse_size_is_height_by_width() -> None:
    assert parse_size("112x96") == (112, 96)
    assert parse_size("96") == (96, 96)
    for bad in ("112x", "axb", "1x2x3", "0x0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_landmarks_on_the_template_give_the_identity() -> None:
    matrix = estimate_similarity(ARCFACE_TEMPLATE_112, ARCFACE_TEMPLATE_112)
    assert np.allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    image = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.array_equal(align_face(image, ARCFACE_TEMPLATE_112), image)


@pytest.mark.parametrize(
    ("angle", "scale", "tx", "ty"), [(30, 2.5, 100, -40), (-75, 0.4, 3, 7), (180, 1.0, 0, 0)]
)
def test_a_known_similarity_is_recovered(angle: float, scale: float, tx: float, ty: float) -> None:
    truth = _similarity(angle, scale, tx, ty)
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = _apply(truth, src)
    assert np.allclose(estimate_similarity(src, dst), truth, atol=1e-9)
    # and the inverse maps the moved points back onto the template
    back = estimate_similarity(dst, src)
    assert np.allclose(_apply(back, dst), src, atol=1e-9)


def test_least_squares_with_noise_and_no_reflection() -> None:
    rng = np.random.default_rng(1)
    truth = _similarity(12, 1.7, 20, 30)
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = _apply(truth, src) + rng.normal(0, 0.5, src.shape)
    fit = estimate_similarity(src, dst)
    assert np.abs(_apply(fit, src) - _apply(truth, src)).max() < 0.6
    # least squares: no worse than the true transform on the noisy points, nor than a nudge
    residual = ((_apply(fit, src) - dst) ** 2).sum()
    assert residual <= ((_apply(truth, src) - dst) ** 2).sum()
    for delta in (1e-3, -1e-3):
        nudged = fit + delta
        assert residual <= ((_apply(nudged, src) - dst) ** 2).sum()
    # a mirrored face is fitted by a rotation, never by a reflection
    mirrored = src * [-1, 1]
    m = estimate_similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_degenerate_points_are_refused() -> None:
    with pytest.raises(ValueError, match="one place"):
        estimate_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match="finite"):
        estimate_similarity(np.full((5, 2), np.nan), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError):
        estimate_similarity(np.ones((5, 2)), np.ones((4, 2)))


def _dot_image(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Black image with a bright 3x3 dot at each point."""
    image = np.zeros((*shape, 3), np.uint8)
    for x, y in np.rint(points).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    return image


def _dot_centres(crop: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the dot near each expected point."""
    gray = crop[..., 0].astype(float)
    out = []
    for x, y in near:
        x0, y0 = int(round(x)) - 4, int(round(y)) - 4
        win = gray[y0 : y0 + 9, x0 : x0 + 9]
        yy, xx = np.mgrid[y0 : y0 + 9, x0 : x0 + 9]
        out.append([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])
    return np.array(out)


@pytest.mark.parametrize("size", [(112, 112), (112, 96), (96, 96)])
def test_rotated_scaled_face_lands_on_the_template(size: tuple[int, int]) -> None:
    truth = _similarity(25, 3.0, 200, 60)
    landmarks = _apply(truth, ARCFACE_TEMPLATE_112.astype(np.float64))
    image = _dot_image(landmarks, (600, 600))
    crop = align_face(image, landmarks, size)
    assert crop.shape == (*size, 3) and crop.dtype == np.uint8
    target = template_for(size)
    assert np.abs(_dot_centres(crop, target) - target).max() < 0.6


def test_large_downscale_is_antialiased() -> None:
    # A fine checkerboard shrunk 8x must average to grey, not alias into stripes.
    board = (np.indices((1200, 1200)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(board[:, :, None], 3, axis=2)
    landmarks = ARCFACE_TEMPLATE_112 * 8 + 100
    crop = align_face(image, landmarks)
    assert abs(crop.mean() - 127.5) < 3 and crop.std() < 10


def test_roi_area_averages_around_the_face_only_to_the_same_crop() -> None:
    """``roi`` area-averages only the region the crop reads: the same crop to resampling
    noise, the same anti-aliasing, and the dots still land on the template."""
    truth = _similarity(-15, 4.5, 600, 300)
    landmarks = _apply(truth, ARCFACE_TEMPLATE_112.astype(np.float64))
    image = _dot_image(landmarks, (1200, 1600))
    crop = align_face(image, landmarks, roi=True)
    assert np.abs(crop.astype(int) - align_face(image, landmarks)).mean() < 1.0
    assert np.abs(_dot_centres(crop, ARCFACE_TEMPLATE_112) - ARCFACE_TEMPLATE_112).max() < 1.0
    board = (np.indices((1200, 1600)).sum(axis=0) % 2 * 255).astype(np.uint8)
    grey = align_face(np.repeat(board[:, :, None], 3, axis=2), landmarks, roi=True)
    assert abs(grey.mean() - 127.5) < 3 and grey.std() < 10  # grey, not aliased stripes


def test_roi_crop_off_the_photo_edge_is_black_outside() -> None:
    landmarks = ARCFACE_TEMPLATE_112 * 5.0 - [250, 150]  # the face hangs off the top left
    image = np.full((900, 1200, 3), 200, np.uint8)
    crop = align_face(image, landmarks, roi=True)
    whole = align_face(image, landmarks)
    assert np.abs(crop.astype(int) - whole).mean() < 1.0
    assert crop[0, 0].max() == 0 and crop[-1, -1].min() > 150


def test_loose_crop_is_the_enlarged_square_box() -> None:
    image = np.zeros((400, 400, 3), np.uint8)
    image[100:300, 150:250] = 255  # a 100 wide, 200 tall white box
    box = np.array([150, 100, 250, 300], np.float32)
    crop = loose_crop(image, box)
    assert crop.shape == (113, 113, 3)
    # square side = 200 * 1.3 = 260 px -> 113 px: the box's height spans 200/260 of the crop
    rows = np.where(crop[:, 56, 0] > 127)[0]
    assert abs((rows[-1] - rows[0] + 1) - 113 * 200 / 260) <= 2
    cols = np.where(crop[56, :, 0] > 127)[0]
    assert abs((cols[-1] - cols[0] + 1) - 113 * 100 / 260) <= 2
    assert abs((cols[0] + cols[-1]) / 2 - 56) <= 1
    with pytest.raises(ValueError):
        loose_crop(image, np.array([10, 10, 5, 20]))


def test_center_crop_uses_the_face_centred_layout() -> None:
    pts = CENTERED_FACE_POINTS * 250
    image = _dot_image(pts, (250, 250))
    crop = center_crop(image)
    # the dots land where the least-squares fit of the layout onto the template puts them
    expected = _apply(estimate_similarity(pts, ARCFACE_TEMPLATE_112), pts.astype(np.float64))
    assert np.abs(expected - ARCFACE_TEMPLATE_112).max() < 3  # the layout is face-like
    assert np.abs(_dot_centres(crop, expected) - expected).max() < 0.6


def test_convert_landmarks_moves_points_by_the_offsets_in_face_scale() -> None:
    truth = _similarity(-10, 2.0, 50, 80)
    offsets = np.array([[0, 1], [0, 1], [0, 1.5], [0, -4.5], [0, -4.5]], np.float32)
    detected = _apply(truth, ARCFACE_TEMPLATE_112 + offsets)
    converted = convert_landmarks(detected, offsets)
    expected = _apply(truth, ARCFACE_TEMPLATE_112.astype(np.float64))
    assert np.abs(converted - expected).max() < 0.01


def _face(x1: float, y1: float, x2: float, y2: float, score: float) -> Face:
    return Face(np.array([x1, y1, x2, y2]), score, np.zeros((5, 2)))


def test_select_face_policies() -> None:
    big_corner = _face(0, 0, 100, 100, 0.7)
    small_centre = _face(180, 180, 220, 220, 0.8)
    sure_side = _face(300, 0, 340, 40, 0.99)
    faces = [sure_side, small_centre, big_corner]
    shape = (400, 400, 3)
    assert select_face(faces, "largest", shape) is big_corner
    assert select_face(faces, "central", shape) is small_centre
    assert select_face(faces, "score", shape) is sure_side
    with pytest.raises(NoFaceError):
        select_face([], "largest", shape)
    with pytest.raises(ValueError, match="unknown face policy"):
        select_face(faces, "biggest", shape)


def test_face_is_frozen_with_typed_arrays() -> None:
    face = _face(1, 2, 3, 4, 0.5)
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (5, 2)
    with pytest.raises(AttributeError):
        face.score = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        face.box[0] = 9
