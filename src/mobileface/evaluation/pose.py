"""Pose-split verification, as in SqueezeFacePoseNet: yaw from 5 landmarks, pairs binned by pose.

**Yaw estimate.** The five landmarks (left eye, right eye, nose tip, left and right mouth
corner, in image coordinates) are first rotated so that the eye line is horizontal (removing
roll). Under a weak-perspective camera turning the head by yaw ``θ`` moves the eyes and mouth
corners (which lie roughly in one plane) symmetrically, while the nose tip, which stands out of
that plane by a depth ``D``, moves sideways by ``D·sin θ`` relative to the face's midline. The
midline is the mean x of the eye midpoint and the mouth midpoint; the depth is taken as
``NOSE_DEPTH_RATIO`` (0.41) times the vertical eye-to-mouth distance, which a yaw turn does not
shorten (the ratio comes from a generic 3-D mean face: nose tip about 13 units in front of
eye/mouth plane for 32 units between eye and mouth level). So::

    yaw = degrees(arcsin(clip(nose offset / (0.41 * eye-to-mouth height), -1, 1)))

Positive yaw means the nose lies to the image's right of the midline. It is a coarse estimate:
expect errors of about ten degrees, more under strong pitch, and it saturates near 90 degrees,
where detectors' landmarks become unreliable anyway.

**Bins.** A face is *frontal* when ``|yaw| < YAW_THRESHOLD`` (30 degrees by default), otherwise
*profile*; a pair falls in frontal-frontal, frontal-profile or profile-profile. Images whose
landmarks are unknown (no face found) are left out of the pose bins and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobileface.errors import DataFormatError

from .metrics import eer as compute_eer

NOSE_DEPTH_RATIO = 0.41
YAW_THRESHOLD = 30.0
POSE_BINS = ("frontal-frontal", "frontal-profile", "profile-profile")


def estimate_yaw(landmarks: np.ndarray) -> np.ndarray:
    """Yaw in degrees of each face from its 5 landmarks, shape (5, 2) or (N, 5, 2)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    single = lm.ndim == 2
    if single:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1:] != (5, 2):
        raise DataFormatError(f"landmarks must have shape (5, 2) or (N, 5, 2), not {lm.shape}")
    left_eye, right_eye, nose, mouth_l, mouth_r = (lm[:, i] for i in range(5))
    eyes = (left_eye + right_eye) / 2
    mouth = (mouth_l + mouth_r) / 2
    d = right_eye - left_eye
    angle = np.arctan2(d[:, 1], d[:, 0])
    cos, sin = np.cos(-angle), np.sin(-angle)

    def derolled(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = p - eyes
        return q[:, 0] * cos - q[:, 1] * sin, q[:, 0] * sin + q[:, 1] * cos

    nose_x, _ = derolled(nose)
    mouth_x, mouth_y = derolled(mouth)
    midline = mouth_x / 2  # the eye midpoint is at x = 0 after centring
    height = np.abs(mouth_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (nose_x - midline) / (NOSE_DEPTH_RATIO * height)
    yaw = np.degrees(np.arcsin(np.clip(ratio, -1.0, 1.0)))
    yaw = np.where(height > 0, yaw, np.nan)
    return yaw[0] if single else yaw


def is_frontal(yaw: np.ndarray, threshold: float = YAW_THRESHOLD) -> np.ndarray:
    return np.abs(np.asarray(yaw, dtype=np.float64)) < threshold


def pair_bins(yaw_a, yaw_b, threshold: float = YAW_THRESHOLD) -> np.ndarray:
    """Each pair's bin name, or "" where either image's yaw is unknown (NaN)."""
    a = np.asarray(yaw_a, dtype=np.float64)
    b = np.asarray(yaw_b, dtype=np.float64)
    profiles = (~is_frontal(a, threshold)).astype(int) + (~is_frontal(b, threshold)).astype(int)
    names = np.asarray(POSE_BINS, dtype=object)[profiles]
    names[np.isnan(a) | np.isnan(b)] = ""
    return names


@dataclass(frozen=True)
class PoseBin:
    name: str
    same_pairs: int
    different_pairs: int
    eer: float | None
    threshold: float | None
    reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "same_pairs": self.same_pairs,
            "different_pairs": self.different_pairs,
            "eer": self.eer,
            "eer_threshold": self.threshold,
            "reason": self.reason,
        }


def pose_split_eer(
    scores, same, yaw_a, yaw_b, threshold: float = YAW_THRESHOLD
) -> tuple[list[PoseBin], int]:
    """EER in each pose bin, and the number of pairs left out for unknown pose."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    bins = pair_bins(yaw_a, yaw_b, threshold)
    out = []
    for name in POSE_BINS:
        m = bins == name
        n_same, n_diff = int(y[m].sum()), int((~y[m]).sum())
        if n_same == 0 or n_diff == 0:
            reason = f"needs same and different pairs (has {n_same} same, {n_diff} different)"
            out.append(PoseBin(name, n_same, n_diff, None, None, reason))
            continue
        e = compute_eer(s[m], y[m])
        out.append(PoseBin(name, n_same, n_diff, e.eer, e.threshold))
    return out, int((bins == "").sum())
