"""Yaw from five landmarks, and the pose-split EER."""

from __future__ import annotations

import numpy as np
import pytest

from mobileface.align.template import ARCFACE_TEMPLATE_112
from mobileface.errors import DataFormatError
from mobileface.evaluation.pose import (
    POSE_BINS,
    estimate_yaw,
    pair_bins,
    pose_split_eer,
)

# A generic 3-D face (x right, y up, z towards the camera): eye centres, nose tip, mouth corners.
FACE_3D = np.array(
    [
        [-150.0, 170.0, -130.0],
        [150.0, 170.0, -130.0],
        [0.0, 0.0, 0.0],
        [-150.0, -150.0, -130.0],
        [150.0, -150.0, -130.0],
    ]
)


def project(yaw_deg: float, roll_deg: float = 0.0, scale: float = 0.2) -> np.ndarray:
    """Orthographic image of FACE_3D turned by ``yaw``, then rolled in the image plane."""
    t = np.radians(yaw_deg)
    x = FACE_3D[:, 0] * np.cos(t) + FACE_3D[:, 2] * np.sin(t)
    y = -FACE_3D[:, 1]  # image y points down
    r = np.radians(roll_deg)
    xr = x * np.cos(r) - y * np.sin(r)
    yr = x * np.sin(r) + y * np.cos(r)
    return np.stack([xr, yr], axis=1) * scale + 200.0


def test_the_alignment_template_is_frontal() -> None:
    assert abs(estimate_yaw(ARCFACE_TEMPLATE_112)) < 2.0


@pytest.mark.parametrize("yaw", [0, 10, 25, 40, 60, -35])
def test_yaw_of_a_turned_face(yaw: float) -> None:
    assert estimate_yaw(project(yaw)) == pytest.approx(yaw, abs=3.0)


def test_yaw_ignores_roll_and_scale() -> None:
    a = estimate_yaw(project(30))
    assert estimate_yaw(project(30, roll_deg=25)) == pytest.approx(a, abs=1e-6)
    assert estimate_yaw(project(30, scale=1.7)) == pytest.approx(a, abs=1e-6)


def test_yaw_sign_follows_the_nose() -> None:
    lm = project(30)
    assert estimate_yaw(lm) > 0
    mirrored = lm.copy()
    mirrored[:, 0] = 400 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # mirror swaps left and right points
    assert estimate_yaw(mirrored) == pytest.approx(-estimate_yaw(lm), abs=1e-6)


def test_batches_and_bad_shapes() -> None:
    batch = np.stack([project(0), project(50)])
    yaw = estimate_yaw(batch)
    assert yaw.shape == (2,)
    with pytest.raises(DataFormatError):
        estimate_yaw(np.zeros((4, 2)))
    degenerate = np.zeros((5, 2))
    assert np.isnan(estimate_yaw(degenerate))


def test_pair_bins() -> None:
    bins = pair_bins([0, 10, 50, 60, np.nan], [5, 45, 20, -70, 0])
    assert bins.tolist() == [
        "frontal-frontal",
        "frontal-profile",
        "frontal-profile",
        "profile-profile",
        "",
    ]
    assert pair_bins([29.9], [30.0]).tolist() == ["frontal-profile"]
    assert pair_bins([40], [40], threshold=45).tolist() == ["frontal-frontal"]


def test_pose_split_eer() -> None:
    rng = np.random.default_rng(0)
    n = 400
    same = rng.random(3 * n) < 0.5
    yaw_a = np.r_[np.zeros(n), np.zeros(n), np.full(n, 60.0)]
    yaw_b = np.r_[np.zeros(n), np.full(n, 60.0), np.full(n, 60.0)]
    # Frontal-frontal separable; the others overlap more and more.
    spread = np.r_[np.full(n, 0.05), np.full(n, 0.3), np.full(n, 1.0)]
    scores = np.where(same, 0.7, 0.1) + spread * rng.normal(size=3 * n)
    yaw_a[:5] = np.nan
    bins, unknown = pose_split_eer(scores, same, yaw_a, yaw_b)
    assert unknown == 5
    assert [b.name for b in bins] == list(POSE_BINS)
    eers = [b.eer for b in bins]
    assert eers[0] < 0.01 < eers[1] < eers[2]
    assert sum(b.same_pairs + b.different_pairs for b in bins) == 3 * n - 5


def test_pose_bin_without_both_classes_says_why() -> None:
    bins, _ = pose_split_eer([0.9, 0.1, 0.8], [True, False, True], [0, 0, 60], [0, 0, 60])
    pp = bins[2]
    assert pp.eer is None and "1 same, 0 different" in pp.reason
    assert bins[1].eer is None  # no frontal-profile pairs at all
