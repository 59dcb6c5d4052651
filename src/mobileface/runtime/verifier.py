"""Face verification (1:1): two photos in, one decision out.

:class:`FaceVerifier` chains decode -> detect -> align -> embed -> cosine -> threshold, and
times each step. Both crops go through the network in one call; with YuNet searching shrunk
copies of the photos (``detect_sides``, as ``mobileface verify`` runs it) a verification costs
little more than the two embeddings.

The threshold is, in order: the one given; the model's calibrated threshold at the chosen
false-accept rate, ``far`` (default 1e-3; from its model card, else its ONNX metadata);
``fallback_threshold`` when the caller supplies one (the CLI passes :data:`FALLBACK_THRESHOLD`
and says so); otherwise none, and results carry ``same=None``.
A ``far`` the model has no calibrated threshold at is an :class:`OperatingPointError` that
lists the calibrated ones; only the default falls back silently.

A calibrated threshold is an :class:`OperatingPoint`: the FAR it was calibrated at and the
TAR the calibration measured there (from the model card), which results carry, so a decision
always says what error rates it stands for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobileface.errors import NoFaceError, OperatingPointError

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
class OperatingPoint:
    """A calibrated operating point: the target FAR and what the calibration measured there.

    ``tar`` is the share of same-person pairs the calibration accepted at ``threshold``,
    ``pairs`` the pairs it used (both ``None`` where the model card does not record them, as
    for thresholds read from ONNX metadata alone).
    """

    far: float
    key: str
    threshold: float
    tar: float | None = None
    pairs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "far": self.far,
            "key": self.key,
            "tar": None if self.tar is None else round(self.tar, 6),
            "calibration_pairs": self.pairs,
        }


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of one verification; ``timings`` are milliseconds per step (both images).

    ``operating_point`` is the calibrated point the threshold comes from (``None`` for a
    given or fallback threshold).
    """

    score: float
    same: bool | None
    threshold: float | None
    threshold_source: str
    faces: tuple[Any, Any]
    timings: dict[str, float] = field(default_factory=dict)
    operating_point: OperatingPoint | None = None

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
            "operating_point": self.operating_point and self.operating_point.to_dict(),
            "faces": [f.to_dict() for f in self.faces],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }


def operating_point_key(far: float | str) -> str:
    """The model-card key of a false-accept rate: ``1e-3``, ``0.001``, ``"1e-3"`` and
    ``"far_1e-3"`` all give ``"far_1e-3"``; :class:`OperatingPointError` if it is no rate."""
    text = str(far).strip()
    try:
        value = float(text[4:] if text.startswith("far_") else text)
    except ValueError:
        raise OperatingPointError(f"FAR {far!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise OperatingPointError(f"FAR {far!r} is not between 0 and 1 (e.g. 1e-3)")
    from mobileface.evaluation.calibration import threshold_key

    return threshold_key(value)


def calibrated_fars(embedder: Any) -> list[str]:
    """The FARs ``embedder`` has calibrated thresholds at, as text (``["1e-3", "1e-4"]``)."""
    table = getattr(embedder, "thresholds", None) or {}
    keys = [k for k in table if isinstance(k, str) and k.startswith("far_")]
    return [k[4:] for k in sorted(keys, key=_rate, reverse=True)]


def resolve_threshold(
    embedder: Any,
    threshold: float | None = None,
    far: float | str | None = None,
    fallback: float | None = None,
) -> tuple[float | None, str]:
    """``(threshold, where it came from)``; see the module docstring for the order.

    ``far`` picks the calibrated operating point (``1e-4``, ``"1e-4"`` or ``"far_1e-4"``;
    default FAR 1e-3). A ``far`` given but not calibrated raises :class:`OperatingPointError`
    naming the calibrated ones; the default falls back to ``fallback``, else ``None``.
    """
    if threshold is not None:
        return float(threshold), "given"
    key = DEFAULT_FAR_KEY if far is None else operating_point_key(far)
    table = getattr(embedder, "thresholds", None) or {}
    if key in table:
        source = getattr(embedder, "thresholds_source", "") or "model"
        return float(table[key]), f"{source}, FAR {key[4:]}"
    if far is not None:
        name = getattr(embedder, "name", "the model")
        known = calibrated_fars(embedder)
        if known:
            raise OperatingPointError(
                f"{name} has no threshold calibrated at FAR {key[4:]}; calibrated FARs: "
                f"{', '.join(known)} (or pass --threshold, or calibrate at more rates with "
                "'mobileface eval ... --calibrate CARD --far RATES')"
            )
        raise OperatingPointError(
            f"{name} has no calibrated thresholds, so no FAR {key[4:]}; pass --threshold, or "
            "calibrate it with 'mobileface eval ... --calibrate CARD'"
        )
    if fallback is not None:
        return float(fallback), "fallback (model has no calibrated threshold)"
    return None, "none"


def operating_point(
    embedder: Any, far: float | str | None = None, threshold: float | None = None
) -> OperatingPoint | None:
    """The calibrated operating point ``resolve_threshold(embedder, None, far)`` decides at.

    ``threshold`` is what it resolved to; the TAR is taken from the model card (``NAME.json``
    beside the model file, as :func:`~mobileface.runtime.open_embedder` reads it) only when the
    card's threshold is that one. ``None`` when the model has no threshold at ``far``.
    """
    key = DEFAULT_FAR_KEY if far is None else operating_point_key(far)
    table = getattr(embedder, "thresholds", None) or {}
    if key not in table:
        return None
    value = float(table[key]) if threshold is None else float(threshold)
    card = _model_card(embedder)
    tar = pairs = None
    card_value = (card.get("thresholds") or {}).get(key)
    if card_value is not None and abs(float(card_value) - value) < 1e-9:
        from mobileface.weights import card_tar

        tar = card_tar(card, key)
        pairs = (card.get("calibration") or {}).get("pairs")
    return OperatingPoint(far=_rate(key), key=key, threshold=value, tar=tar, pairs=pairs)


def _model_card(embedder: Any) -> dict[str, Any]:
    card = getattr(embedder, "card", None)
    if isinstance(card, dict):
        return card
    path = getattr(embedder, "path", None)
    if path is None:
        return {}
    from mobileface.errors import DataFormatError
    from mobileface.weights import load_model_card

    try:
        return load_model_card(path)
    except DataFormatError:
        return {}


def _rate(key: str) -> float:
    try:
        return float(key[4:])
    except ValueError:
        return 0.0


class FaceVerifier:
    """Decide whether two photos show the same person.

    Args:
        embedder: any :class:`~mobileface.runtime.embedder.Embedder`.
        detector: a :class:`mobileface.align.Detector`; default YuNet, built on first use.
        threshold: cosine threshold; default the model's calibrated one (see module doc).
        policy: which face to use when a photo has several (``prominent``, the default:
            size, position and detector score together; ``largest``, ``central``, ``score``).
        far: the calibrated operating point to decide at, as a false-accept rate (``1e-4``,
            ``"1e-4"`` or the card key ``"far_1e-4"``); default 1e-3. One the model has no
            threshold at raises :class:`OperatingPointError` listing the calibrated ones.
        fallback_threshold: used when the model has no calibrated threshold (and ``far`` is
            not given).
        batch: embed both crops in one network call (default); ``False`` embeds them one at a
            time, as before (same scores, within float rounding).
        crop_norm: restore a dark or flat aligned crop before embedding it (default;
            :func:`mobileface.align.lighting.normalise_crop`); ordinary crops are unchanged.

    ``threshold``, ``threshold_source`` and ``operating_point`` (an :class:`OperatingPoint`,
    ``None`` for a given or fallback threshold) say what it decides at.

    Images may be paths, encoded bytes, or ``H x W x 3`` uint8 RGB (or ``H x W`` gray)
    arrays. Not thread-safe
    (detectors are not): give each thread its own verifier; they may share the embedder.
    """

    def __init__(
        self,
        embedder: Any,
        detector: Any = None,
        threshold: float | None = None,
        policy: str = "prominent",
        *,
        far: float | str | None = None,
        fallback_threshold: float | None = None,
        batch: bool = True,
        crop_norm: bool = True,
    ) -> None:
        from mobileface.align import POLICIES

        if policy not in POLICIES:
            raise ValueError(f"unknown face policy {policy!r}; choose from {', '.join(POLICIES)}")
        self.embedder = embedder
        self._detector = detector
        self.policy = policy
        self.batch = bool(batch)
        self.crop_norm = bool(crop_norm)
        self.threshold, self.threshold_source = resolve_threshold(
            embedder, threshold, far, fallback_threshold
        )
        self.operating_point = (
            None if threshold is not None else operating_point(embedder, far, self.threshold)
        )

    @property
    def detector(self) -> Any:
        """The detector; by default YuNet on the whole photo, as the gallery and the service
        use it, built on first use (``mobileface verify`` passes YuNet with
        ``detect_sides=DETECT_SIDES``: much faster on large photos)."""
        if self._detector is None:
            from mobileface.align import create_detector

            self._detector = create_detector("yunet")
        return self._detector

    def load(self, image: ImageInput, label: str = "image") -> np.ndarray:
        """Decode ``image`` (path, bytes or array; an ``H x W`` gray array too) to
        ``H x W x 3`` uint8 RGB."""
        if isinstance(image, np.ndarray):
            from mobileface.image import rgb_array

            return rgb_array(image, label)
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
        """The aligned crop of ``face`` at the embedder's input size (a large face in a large
        photo is area-averaged around the face only: ``align_face(..., roi=True)``), dark or
        flat crops restored (``crop_norm``)."""
        from mobileface.align import align_face

        size = tuple(self.embedder.input_size)
        crop = align_face(image_rgb, face.landmarks, size=size, roi=True)
        if not self.crop_norm:
            return crop
        from mobileface.align.lighting import normalise_crop

        return normalise_crop(crop)

    def warm_up(self) -> float:
        """Run every step once on a blank image; returns the milliseconds it took.

        The first call of each step pays one-off costs (lazy imports, loading the detector,
        the first inference of each ONNX Runtime session, OpenCV's first warp): tens to
        hundreds of milliseconds that say nothing about the steady-state time per photo. Call
        this first to keep them out of :meth:`verify`'s ``timings``.
        """
        import cv2

        from mobileface.align import template_for

        start = time.perf_counter()
        h, w = (int(v) for v in self.embedder.input_size)
        side = max(256, 2 * h, 2 * w)  # a photo of LFW's size, padded as the detector pads it
        blank = np.full((side, side, 3), 128, dtype=np.uint8)
        ok, encoded = cv2.imencode(".jpg", blank)
        rgb = self.load(encoded.tobytes() if ok else blank, "warm-up image")
        self.detector.detect(rgb)
        from mobileface.align import align_face

        crop = align_face(rgb, template_for((h, w)) + np.array([w / 2, h / 2]), size=(h, w))
        self.embedder.embed([crop, crop] if self.batch else [crop])  # the batch size verify uses
        return (time.perf_counter() - start) * 1e3

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
        if self.batch:
            emb = l2_normalize(self.embedder.embed(crops))
        else:
            emb = l2_normalize(np.concatenate([self.embedder.embed([crop]) for crop in crops]))
        score = float(np.dot(emb[0], emb[1]))
        timings["embed"] = (time.perf_counter() - t0) * 1e3
        timings["total"] = (time.perf_counter() - start) * 1e3
        same = None if self.threshold is None else bool(score >= self.threshold)
        return VerificationResult(
            score,
            same,
            self.threshold,
            self.threshold_source,
            (faces[0], faces[1]),
            timings,
            operating_point=self.operating_point,
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
