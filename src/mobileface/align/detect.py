"""Detectors by name, and detection + selection + alignment in one call."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import NoFaceError
from .face import DEFAULT_POLICY, Detector, Face, select_face
from .template import align_face


def _yunet(**kwargs) -> Detector:
    from .yunet import YuNetDetector

    return YuNetDetector(**kwargs)


def _dlib(**kwargs) -> Detector:
    from .dlib_backend import DlibDetector

    return DlibDetector(**kwargs)


DETECTORS: dict[str, Callable[..., Detector]] = {"yunet": _yunet, "dlib": _dlib}
"""Detector factories by name; ``yunet`` is the default."""

PRECISE_YUNET: dict = {"landmarks": "onet"}
"""YuNet options for offline alignment (``mobileface align`` and ``eval`` use them unless
``--fast``): one YuNet view finds the faces, then MTCNN's ONet measures the 5 points on each
box (:mod:`.onet`). With the ``prominent`` policy, LFW View 2 with the peer MobileFaceNet
scores 99.32 % against 98.87 % with the previous setting (YuNet's points averaged over 6
views, ``flip_average`` and ``extra_scales=(0.8, 1.25)``, and the ``largest`` face), at about
a third of the CPU time per photo (``benchmarks/bench_align.py --lfw``). In development (LFW
View 1) averaging YuNet over 6 views before ONet's pass added nothing."""
FAST_YUNET: dict = {"landmarks": "yunet"}
"""``mobileface align --fast``: YuNet's own points from one view, without ONet's pass."""


def available_detectors() -> list[str]:
    return sorted(DETECTORS)


def create_detector(name: str = "yunet", **kwargs) -> Detector:
    """Build the detector called ``name`` (see :data:`DETECTORS`) with ``kwargs``."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown detector {name!r}; choose from {', '.join(available_detectors())}"
        ) from None
    return factory(**kwargs)


def align_image(
    image_rgb: np.ndarray,
    detector: Detector,
    size: tuple[int, int] = (112, 112),
    policy: str = DEFAULT_POLICY,
) -> tuple[np.ndarray, Face]:
    """Detect faces, keep one by ``policy``, and return its aligned crop with the face.

    Raises :class:`~mobileface.errors.NoFaceError` when the detector finds no face.
    """
    faces = detector.detect(image_rgb)
    if not faces:
        raise NoFaceError(f"no face detected by {detector.name}")
    face = select_face(faces, policy, image_rgb.shape)
    return align_face(image_rgb, face.landmarks, size), face
