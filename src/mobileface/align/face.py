"""What a detector returns, the interface every detector follows, and which face to keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import NoFaceError

POLICIES = ("prominent", "largest", "central", "score")
"""Ways to pick one face from several: the most prominent (size, position and score together;
the default), biggest box, box centre nearest the image centre, or highest detector score."""
DEFAULT_POLICY = "prominent"
LANDMARK_MIRROR = [1, 0, 2, 4, 3]
"""The 5 points' order in a mirror image: eyes and mouth corners swap sides."""
PROMINENCE_SPREAD = 0.6
"""``prominent`` weighs a face by ``exp(-d^2 / (2 * 0.6^2))``, ``d`` its centre's distance from
the image centre in half-widths and half-heights (1 at an edge's midpoint): a face halfway to
the side needs a 1.4x larger box to beat a centred one, a face at the side 4x."""


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    ``box`` is ``(x1, y1, x2, y2)``; ``landmarks`` is 5x2 ``(x, y)`` in the order left eye,
    right eye, nose tip, left mouth corner, right mouth corner, "left" meaning image-left.
    ``found_by`` says which detection pass found it: ``"photo"`` (the photo as given) or
    ``"low_light"`` (a contrast-restored copy, tried only when the first pass found no face;
    see :mod:`mobileface.align.lighting`).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    found_by: str = "photo"

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float32).reshape(4)
        landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        box.setflags(write=False)
        landmarks.setflags(write=False)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    def scaled(self, factor: float) -> Face:
        """This face in an image resized by ``factor``."""
        return Face(self.box * factor, self.score, self.landmarks * factor, self.found_by)

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "found_by": self.found_by,
        }


@runtime_checkable
class Detector(Protocol):
    """A face detector: ``detect`` returns every face found, highest score first."""

    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Face]: ...


def select_face(
    faces: list[Face],
    policy: str = DEFAULT_POLICY,
    image_shape: tuple[int, ...] | None = None,
) -> Face:
    """Pick one face by ``policy`` (see :data:`POLICIES`); ``prominent`` and ``central`` need
    ``image_shape``.

    Raises :class:`~mobileface.errors.NoFaceError` when ``faces`` is empty.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown face policy {policy!r}; choose from {', '.join(POLICIES)}")
    if not faces:
        raise NoFaceError("no face detected")
    if policy == "largest":
        return max(faces, key=lambda f: (f.area, f.score))
    if policy == "score":
        return max(faces, key=lambda f: f.score)
    if image_shape is None:
        raise ValueError(f"policy {policy!r} needs the image shape")
    if policy == "prominent":
        return max(faces, key=lambda f: (prominence(f, image_shape), f.score))
    center = np.array([image_shape[1] / 2.0, image_shape[0] / 2.0])
    return min(faces, key=lambda f: (float(((f.center - center) ** 2).sum()), -f.score))


def prominence(face: Face, image_shape: tuple[int, ...]) -> float:
    """How much ``face`` looks like a photo's subject: the side of its box's part inside the
    image (a face cut by the frame counts less), times its detector score, times a Gaussian
    of its distance from the image centre (:data:`PROMINENCE_SPREAD`).

    On LFW it picks the centred subject where ``largest`` picks a bystander cut by the frame;
    in a group shot it picks the central one of similar faces, and a face much larger than the
    others wherever it is.
    """
    h, w = float(image_shape[0]), float(image_shape[1])
    x1, y1, x2, y2 = (float(v) for v in face.box)
    inside = max(0.0, min(x2, w) - max(x1, 0.0)) * max(0.0, min(y2, h) - max(y1, 0.0))
    dx, dy = (face.center - (w / 2.0, h / 2.0)) / (w / 2.0, h / 2.0)
    position = np.exp(-(dx * dx + dy * dy) / (2.0 * PROMINENCE_SPREAD**2))
    return float(np.sqrt(inside) * face.score * position)
