"""Face verification (1:1): two photos in, one decision out.

:class:`FaceVerifier` chains decode -> detect -> align -> embed -> cosine -> threshold, and
times each step. The threshold is, in order: the one given; the model's calibrated threshold
at FAR 1e-3 (from the ONNX metadata, else its model card); ``fallback_threshold`` when the
caller supplies one (the CLI passes :data:`FALLBACK_THRESHOLD` and says so); otherwise none, and
results carry ``same=None``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobileface.errors import ImageError, NoFaceError

from .metadata import DEFAULT_FAR_KEY
from .scoring import l2_normalize

FALLBACK_THRESHOLD = 0.35
"""Cosine threshold used by the CLI for a model with no calibrated threshold, with a warning.

It is a generic operating point for MobileFaceNet-class embedders trained with a margin loss
(same-person pairs of LFW mostly score above it, different-person pairs below); calibrate the
model (``mobileface eval ... --calibrate``) or pass ``--threshold`` for a real one.
"""

STEPS = ("decode", "detect", "align", "embed")

ImageInput = str | Path | bytes | np.ndarray


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of one verification; ``timings`` are milliseconds per step (both images)."""

    score: float
    same: bool | None
    threshold: float | None
    threshold_source: str
    faces: tuple[Any, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def boxes(self) -> np.ndarray:
        """``2 x 4`` face boxes ``(x1, y1, x2, y2)`` in each image's pixels."""
        return np.stack([f.box for f in self.faces])

    @property
    def landmarks(self) -> np.ndarray:
        """``2 x 5 x 2`` landmarks (eyes, nose, mouth corners) in each image's pixels."""
        return np.stack([f.landmarks for f in self.faces])

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(float(self.score), 6),
            "same": self.same,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "faces": [f.to_dict() for f in self.faces],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }


def resolve_threshold(
    embedder: Any,
    threshold: float | None = None,
    far_key: str = DEFAULT_FAR_KEY,
    fallback: float | None = None,
) -> tuple[float | None, str]:
    """``(threshold, where it came from)``; see the module docstring for the order."""
    if threshold is not None:
        return float(threshold), "given"
    table = getattr(embedder, "thresholds", None) or {}
    if far_key in table:
        source = getattr(embedder, "thresholds_source", "") or "model"
        return float(table[far_key]), f"{source}, {far_key.replace('_', ' ')}"
    if fallback is not None:
        return float(fallback), "fallback (model has no calibrated threshold)"
    return None, "none"


class FaceVerifier:
    """Decide whether two photos show the same person.

    Args:
        embedder: any :class:`~mobileface.runtime.embedder.Embedder`.
        detector: a :class:`mobileface.align.Detector`; default YuNet, built on first use.
        threshold: cosine threshold; default the model's calibrated one (see module doc).
        policy: which face to use when a photo has several (``largest``, ``central``,
            ``score``).
        far_key: the calibrated operating point to use (``far_1e-3`` or ``far_1e-4``).
        fallback_threshold: used when the model has no calibrated threshold.

    Images may be paths, encoded bytes, or ``H x W x 3`` uint8 RGB arrays. Not thread-safe
    (detectors are not): give each thread its own verifier; they may share the embedder.
    """

    def __init__(
        self,
        embedder: Any,
        detector: Any = None,
        threshold: float | None = None,
        policy: str = "largest",
        *,
        far_key: str = DEFAULT_FAR_KEY,
        fallback_threshold: float | None = None,
    ) -> None:
        from mobileface.align import POLICIES

        if policy not in POLICIES:
            raise ValueError(f"unknown face policy {policy!r}; choose from {', '.join(POLICIES)}")
        self.embedder = embedder
        self._detector = detector
        self.policy = policy
        self.threshold, self.threshold_source = resolve_threshold(
            embedder, threshold, far_key, fallback_threshold
        )

    @property
    def detector(self) -> Any:
        if self._detector is None:
            from mobileface.align import create_detector

            self._detector = create_detector("yunet")
        return self._detector

    def load(self, image: ImageInput, label: str = "image") -> np.ndarray:
        """Decode ``image`` (path, bytes or array) to ``H x W x 3`` uint8 RGB."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageError(
                    f"{label}: expected an H x W x 3 uint8 RGB array, got {image.dtype} "
                    f"{image.shape}"
                )
            return image
        from mobileface.image import load_image

        if isinstance(image, (bytes, bytearray, memoryview)):
            return load_image(bytes(image), name=label)
        return load_image(image)

    def find_face(self, image_rgb: np.ndarray, label: str = "image") -> Any:
        """The face ``policy`` picks; :class:`NoFaceError` naming ``label`` if there is none."""
        from mobileface.align import select_face

        faces = self.detector.detect(image_rgb)
        if not faces:
            h, w = image_rgb.shape[:2]
            raise NoFaceError(
                f"{label}: no face found by {getattr(self.detector, 'name', 'the detector')} "
                f"({w}x{h} image)"
            )
        return select_face(faces, self.policy, image_rgb.shape)

    def align(self, image_rgb: np.ndarray, face: Any) -> np.ndarray:
        """The aligned crop of ``face`` at the embedder's input size."""
        from mobileface.align import align_face

        return align_face(image_rgb, face.landmarks, size=tuple(self.embedder.input_size))

    def verify(self, image_a: ImageInput, image_b: ImageInput) -> VerificationResult:
        """Compare the chosen face of each image; raises :class:`NoFaceError` naming the image."""
        timings = dict.fromkeys(STEPS, 0.0)
        start = time.perf_counter()
        crops, faces = [], []
        for image, default in ((image_a, "image A"), (image_b, "image B")):
            label = _label(image, default)
            t0 = time.perf_counter()
            rgb = self.load(image, label)
            t1 = time.perf_counter()
            face = self.find_face(rgb, label)
            t2 = time.perf_counter()
            crops.append(self.align(rgb, face))
            t3 = time.perf_counter()
            faces.append(face)
            timings["decode"] += (t1 - t0) * 1e3
            timings["detect"] += (t2 - t1) * 1e3
            timings["align"] += (t3 - t2) * 1e3
        t0 = time.perf_counter()
        # One crop per call: on one thread, ONNX Runtime runs two batches of 1 faster than one
        # batch of 2 (8.1 against 8.8 ms for MobileFaceNet here).
        emb = l2_normalize(np.concatenate([self.embedder.embed([crop]) for crop in crops]))
        score = float(np.dot(emb[0], emb[1]))
        timings["embed"] = (time.perf_counter() - t0) * 1e3
        timings["total"] = (time.perf_counter() - start) * 1e3
        same = None if self.threshold is None else bool(score >= self.threshold)
        return VerificationResult(
            score, same, self.threshold, self.threshold_source, (faces[0], faces[1]), timings
        )

    def embed_image(self, image: ImageInput) -> tuple[np.ndarray, Any]:
        """``(L2-normalised embedding, face)`` of the face ``policy`` picks in ``image``."""
        label = _label(image, "image")
        rgb = self.load(image, label)
        face = self.find_face(rgb, label)
        crop = self.align(rgb, face)
        return l2_normalize(self.embedder.embed([crop]))[0], face


def _label(image: ImageInput, default: str) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return default
