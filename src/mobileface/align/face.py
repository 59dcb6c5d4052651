"""What a detector returns, the interface every detector follows, and which face to keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import NoFaceError

POLICIES = ("largest", "central", "score")
"""Ways to pick one face from several: biggest box, box centre nearest the image centre, or
highest detector score."""


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    ``box`` is ``(x1, y1, x2, y2)``; ``landmarks`` is 5x2 ``(x, y)`` in the order left eye,
    right eye, nose tip, left mouth corner, right mouth corner, "left" meaning image-left.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

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
        return Face(self.box * factor, self.score, self.landmarks * factor)

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


@runtime_checkable
class Detector(Protocol):
    """A face detector: ``detect`` returns every face found, highest score first."""

    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Face]: ...


def select_face(
    faces: list[Face],
    policy: str = "largest",
    image_shape: tuple[int, ...] | None = None,
) -> Face:
    """Pick one face by ``policy`` (see :data:`POLICIES`); ``central`` needs ``image_shape``.

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
        raise ValueError("policy 'central' needs the image shape")
    center = np.array([image_shape[1] / 2.0, image_shape[0] / 2.0])
    return min(faces, key=lambda f: (float(((f.center - center) ** 2).sum()), -f.score))
