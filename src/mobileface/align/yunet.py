"""YuNet (OpenCV Zoo, MIT licence): the default detector, run by ONNX Runtime (default, about
3x faster; see :mod:`.yunet_ort`) or by OpenCV's ``cv2.FaceDetectorYN``.

The model file is found, in order, at an explicit path, ``$MOBILEFACE_YUNET``, the user cache,
the copy shipped inside the package (``mobileface/assets/yunet.onnx``, with its MIT notice in
``assets/YUNET_LICENSE``: an installed package works offline from any folder), the shared
models folder beside the data set, and last by download from a pinned URL whose SHA-256 is
checked before use.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelFileError
from ..paths import RemoteFile, cache_dir, data_dir, download_file, resolve_file
from .face import Face
from .template import _warp as warp
from .template import convert_landmarks

REFINE_FACE_SIZE = 100.0
"""Faces are measured (second pass) at this box size in pixels: that of LFW's faces."""
REFINE_ABOVE = 1.5
"""Faces whose box exceeds ``REFINE_ABOVE * REFINE_FACE_SIZE`` pixels get the second pass."""
REFINE_PATCH = 224
REFINE_MAX_FACES = 5

YUNET_ENV = "MOBILEFACE_YUNET"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "assets"  # the package's own copy

# The checksum is that of the copy in the project's shared models folder. The URL is OpenCV
# Zoo's; a file served there with different bytes is refused, never used.
YUNET_FILE = RemoteFile(
    filename="yunet.onnx",
    url=(
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
        "face_detection_yunet_2023mar.onnx"
    ),
    sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
    env_var=YUNET_ENV,
)


YUNET_OFFSETS = np.array(
    [[-0.30, 0.99], [0.30, 0.99], [0.0, 1.42], [-0.37, -4.72], [0.37, -4.72]], dtype=np.float32
)
"""Where YuNet's 5 points lie relative to the ArcFace template on 112x112 crops aligned with
MTCNN landmarks (median over 4,639 CelebA and Pins crops of the shared data, made symmetric):
YuNet puts the mouth corners on the lip line, about 4.7 px above MTCNN's, and the eyes and nose
tip 1 to 1.4 px lower. ``YuNetDetector(landmarks="mtcnn")`` removes this offset."""

BACKENDS = ("onnxruntime", "opencv")

LANDMARK_STYLES = ("yunet", "mtcnn")
"""``yunet``: the points as YuNet gives them (WIDER FACE's RetinaFace-style annotations; the
default, and what the peer MobileFaceNet scores best with on LFW). ``mtcnn``: moved onto
MTCNN's convention, that of the shared 112x112 CelebA and Pins crops, for models trained on
them."""


def yunet_model_path(
    model_path: str | Path | None = None,
    *,
    download: bool = True,
    remote: RemoteFile = YUNET_FILE,
) -> Path:
    """Locate the YuNet ONNX file (see the module docstring for the order)."""
    if model_path is not None or (remote.env_var and os.environ.get(remote.env_var)):
        return resolve_file(remote, model_path, download=False)
    cached = cache_dir() / remote.filename
    if cached.is_file():
        return cached
    bundled = BUNDLED_DIR / remote.filename
    if bundled.is_file():  # shipped inside the package (MIT; assets/YUNET_LICENSE)
        return bundled
    shared = data_dir().parent / "models" / remote.filename
    if shared.is_file():
        return shared
    if not download:
        raise ModelFileError(
            f"{remote.filename} not found: pass its path, set ${remote.env_var}, or place it in "
            f"{cache_dir()} or {shared.parent}"
        )
    return download_file(remote, cached)


class YuNetDetector:
    """Face detector with 5 landmarks, run by OpenCV's DNN module (no other dependency).

    Images whose longer side exceeds ``max_side`` are shrunk for detection only; boxes and
    landmarks are given in the original image's coordinates. With ``refine`` (default), faces
    larger than 150 px are detected a second time in a patch where they are 100 px wide, so
    their landmarks are measured at the scale of benchmark faces. ``landmarks`` picks the
    landmark convention (see :data:`LANDMARK_STYLES`). ``flip_average`` and ``extra_scales``
    average each face's points over more views: the mirrored image, and the image (and its
    mirror) resized by each extra scale; ``mobileface.align.PRECISE_YUNET`` holds the setting
    ``mobileface align`` uses. Not thread-safe: give each thread or process its own instance.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int | None = 1280,
        download: bool = True,
        landmarks: str = "yunet",
        refine: bool = True,
        flip_average: bool = False,
        extra_scales: tuple[float, ...] = (),
        backend: str = "onnxruntime",
    ) -> None:
        self.model_path = yunet_model_path(model_path, download=download)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.score_threshold = float(score_threshold)
        self.max_side = max_side
        if landmarks not in LANDMARK_STYLES:
            raise ValueError(
                f"landmarks must be one of {', '.join(LANDMARK_STYLES)}, got {landmarks!r}"
            )
        self.landmark_style = landmarks
        self.refine = refine
        self.flip_average = flip_average
        self.extra_scales = tuple(float(v) for v in extra_scales)
        if any(not 0.1 <= v <= 4 for v in self.extra_scales):
            raise ValueError(f"extra_scales must lie in [0.1, 4], got {extra_scales}")
        self._net = self._open(nms_threshold, top_k)
        self._input_size: tuple[int, int] | None = None

    def _open(self, nms_threshold: float, top_k: int):
        if self.backend == "onnxruntime":
            from .yunet_ort import OrtYuNet

            return OrtYuNet(self.model_path, self.score_threshold, nms_threshold, top_k)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            return cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), self.score_threshold, nms_threshold, top_k
            )
        except cv2.error as exc:
            raise ModelFileError(
                f"{self.model_path}: not a usable YuNet model: {str(exc).strip()}"
            ) from None
        finally:
            cv2.utils.logging.setLogLevel(level)

    def __repr__(self) -> str:
        return (
            f"YuNetDetector({str(self.model_path)!r}, score_threshold={self.score_threshold}, "
            f"backend={self.backend!r})"
        )

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape}")
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        factor = 1.0
        small = bgr
        if self.max_side and max(h, w) > self.max_side:
            factor = self.max_side / max(h, w)
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        faces = []
        for rank, row in enumerate(self._run(small)):
            # Box edges scale as they are; pixel centres as (q + 0.5) / factor - 0.5.
            box = row[:4] / factor
            landmarks = (row[4:14].reshape(5, 2) + 0.5) / factor - 0.5
            if self.refine and rank < REFINE_MAX_FACES:
                side = max(box[2] - box[0], box[3] - box[1])
                if side > REFINE_ABOVE * REFINE_FACE_SIZE:
                    refined = self._refine(bgr, box)
                    if refined is not None:
                        box, landmarks = refined
            if self.landmark_style == "mtcnn":
                landmarks = convert_landmarks(landmarks, YUNET_OFFSETS)
            faces.append(Face(box, float(row[14]), landmarks))
        faces.sort(key=lambda f: -f.score)
        return faces

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        """Rows of ``x1, y1, x2, y2, 10 landmark coordinates, score``, best first.

        With ``flip_average`` and ``extra_scales``, each face's box and landmarks are the mean
        over the views (mirror image, other scales) in which the same face is found: YuNet's
        points jitter by about 5% of the eye distance from view to view, and averaging steadies
        them (the mirror also cancels any left-right bias)."""
        rows = self._run_once(bgr)
        if len(rows) == 0 or not (self.flip_average or self.extra_scales):
            return rows
        views = [self._mirrored(bgr)] if self.flip_average else []
        h, w = bgr.shape[:2]
        for scale in self.extra_scales:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            scaled = cv2.resize(bgr, size, interpolation=method)
            factors = np.array([size[0] / w, size[1] / h])
            found = [self._run_once(scaled)] + (
                [self._mirrored(scaled)] if self.flip_average else []
            )
            for view in found:
                back = view.copy()
                back[:, 0:4] = (view[:, 0:4].reshape(-1, 2, 2) / factors).reshape(-1, 4)
                points = view[:, 4:14].reshape(-1, 5, 2)
                back[:, 4:14] = ((points + 0.5) / factors - 0.5).reshape(-1, 10)
                views.append(back)
        total = rows[:, :14].copy()
        count = np.ones(len(rows))
        for view in views:
            if len(view) == 0:
                continue
            for i, row in enumerate(rows):
                overlap = _iou(row[:4], view[:, :4])
                best = int(np.argmax(overlap))
                if overlap[best] > 0.5:
                    total[i] += view[best, :14]
                    count[i] += 1
        rows[:, :14] = total / count[:, None]
        return rows

    def _mirrored(self, bgr: np.ndarray) -> np.ndarray:
        """Faces found in the mirror image, in ``bgr``'s coordinates and point order."""
        mirrored = self._run_once(np.ascontiguousarray(bgr[:, ::-1]))
        right = bgr.shape[1] - 1.0
        back = mirrored.copy()
        back[:, [0, 2]] = right - mirrored[:, [2, 0]]
        points = mirrored[:, 4:14].reshape(-1, 5, 2).copy()
        points[:, :, 0] = right - points[:, :, 0]
        back[:, 4:14] = points[:, [1, 0, 2, 4, 3]].reshape(-1, 10)  # swap left and right
        return back

    def _run_once(self, bgr: np.ndarray) -> np.ndarray:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(bgr)
        if rows is None:
            return np.zeros((0, 15))
        rows = np.array(rows, dtype=np.float64).reshape(-1, 15)
        rows[:, 2:4] += rows[:, 0:2]  # x, y, w, h -> x1, y1, x2, y2
        return rows[np.argsort(-rows[:, 14], kind="stable")]

    def _refine(self, bgr: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Detect again in a patch where the face is REFINE_FACE_SIZE pixels wide.

        YuNet's landmarks shift with the face's size in pixels; seeing every large face at one
        size makes a phone photo and a benchmark crop of the same face align alike.
        """
        side = max(box[2] - box[0], box[3] - box[1])
        scale = REFINE_FACE_SIZE / side
        centre = (box[:2] + box[2:]) / 2.0
        shift = (REFINE_PATCH - 1) / 2.0 - scale * centre
        matrix = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
        patch = warp(bgr, matrix, REFINE_PATCH, REFINE_PATCH)
        rows = self._run(patch)
        if len(rows) == 0:
            return None
        centres = (rows[:, 0:2] + rows[:, 2:4]) / 2.0
        best = rows[np.argmin(((centres - (REFINE_PATCH - 1) / 2.0) ** 2).sum(axis=1))]
        new_side = max(best[2] - best[0], best[3] - best[1])
        if not 0.6 < new_side / REFINE_FACE_SIZE < 1.6:
            return None  # not the same face
        to_image = lambda pts: (pts - shift) / scale  # noqa: E731
        return (
            to_image(best[:4].reshape(2, 2)).reshape(4),
            to_image(best[4:14].reshape(5, 2)),
        )


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
