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
from .face import LANDMARK_MIRROR, Face
from .template import _warp as warp
from .template import convert_landmarks

REFINE_FACE_SIZE = 100.0
"""Faces are measured (second pass) at this box size in pixels: that of LFW's faces."""
REFINE_ABOVE = 1.5
"""Faces whose box exceeds ``REFINE_ABOVE * REFINE_FACE_SIZE`` pixels get the second pass."""
REFINE_PATCH = 224
REFINE_MAX_FACES = 5
STRIDE = 32  # YuNet's coarsest stride

DETECT_SIDES = (160, 480)
"""Longest sides of the shrunk copies ``verify`` searches for faces (``YuNetDetector(
detect_sides=...)``), smallest first. YuNet finds 99% of LFW's faces once their box is 28 px
(98% at 24 px, 90% at 20 px, 61% at 16 px): at 160 px it finds the face of a 250x250 LFW photo
(box 124 px there, 79 px in the copy) in a quarter of the network time that photo takes at full
size, at 480 px faces whose box is 1/15 of the photo's longer side (85 px in a 1280x720 photo),
in a tenth of the full-size time. Through ``verify``'s path (one view, largest face, no flip),
searching LFW View 2 at 160 px gave 96.03 % (fp32) and 96.12 % (int8) against 95.78 % and
95.48 % at full size."""
VERIFY_YUNET: dict = {"landmarks": "yunet", "onet_flip": False}
"""What ``verify`` adds to :data:`DETECT_SIDES`. YuNet's own points by default: ONet's pass
(``verify --landmarks onet``: on the photo alone, not its mirror too) raised LFW View 2
through verify's steps with the default weights from 96.85 % to 97.12 % (fp32) and from
96.70 % to 97.17 % (int8; ``benchmarks/bench_verify.py --rounds 0 --lfw``), but took a
verification of two 250x250 photos from about 1.95x to 2.25-2.3x the CPU time of one peer
embedding on this busy 2-core machine (``benchmarks/bench_align.py``, part 4): over verify's
budget of 2.2x."""
MEASURE_MIN = 64
"""A face found in a shrunk copy with a box under this many pixels there is measured again at
full resolution (YuNet's landmarks are as good as they get from about 80 px on)."""

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

Level = tuple[np.ndarray, float, float]  # an image pyramid level: pixels, fx, fy

LANDMARK_STYLES = ("onet", "yunet", "mtcnn")
"""``onet`` (default): measured again by MTCNN's ONet on YuNet's box (:mod:`.onet`; with
``onet_flip``, averaged with ONet's points on the mirror image). ``yunet``: the points as YuNet
gives them (WIDER FACE's RetinaFace-style annotations). ``mtcnn``: YuNet's moved by their
average offset from the points of the shared 112x112 CelebA and Pins crops
(:data:`YUNET_OFFSETS`). On LFW the peer MobileFaceNet and the default weights separate same
and different pairs best with ``onet`` (README, "Alignment")."""


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
    their landmarks are measured at the scale of benchmark faces. ``landmarks`` picks where
    the 5 points come from (see :data:`LANDMARK_STYLES`; by default MTCNN's ONet measures them
    again on each face's box, all faces in one call: :mod:`.onet`). ``flip_average`` and
    ``extra_scales`` average each face's box and points over more views: the mirrored image,
    and the image (and its mirror) resized by each extra scale;
    ``mobileface.align.PRECISE_YUNET`` holds the setting ``mobileface align`` uses.

    ``detect_sides`` (none by default; ``verify`` uses :data:`DETECT_SIDES`) adapt the
    network's input to the photo: a photo larger than such a side is searched on a copy shrunk
    to it (exact halvings, then one bilinear step of less than 2x; no padding beyond YuNet's
    32-pixel grid), smallest side first; the first copy that shows a face gives the faces.
    Each face seen there under :data:`MEASURE_MIN` pixels, or over 150 (up to 5 faces; unless
    ``refine`` is off), is measured again at full resolution in a 224x224 patch, at its own
    size (up to 150 px) or at 100 px, as a full-size detection would measure it. A photo that
    no copy shows a face in is searched as without ``detect_sides``. ``threads`` is ONNX
    Runtime's intra-op thread count. With ``low_light`` (default), a photo in which all that
    finds no face is searched once more, the same way, on a contrast-restored copy
    (:mod:`.lighting`); faces found there have ``found_by="low_light"``. Not thread-safe: give
    each thread or process its own instance.
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
        landmarks: str = "onet",
        refine: bool = True,
        flip_average: bool = False,
        extra_scales: tuple[float, ...] = (),
        backend: str = "onnxruntime",
        detect_sides: tuple[int, ...] = (),
        threads: int = 1,
        low_light: bool = True,
        onet_flip: bool = True,
    ) -> None:
        self.low_light = bool(low_light)
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
        self.detect_sides = tuple(sorted({int(v) for v in detect_sides}))
        if any(v < 32 for v in self.detect_sides):
            raise ValueError(f"detect_sides must be at least 32 pixels, got {detect_sides}")
        self.threads = max(1, int(threads))
        self._net = self._open(nms_threshold, top_k)
        self._onet = None
        if landmarks == "onet":
            from .onet import OnetRefiner

            self._onet = OnetRefiner(threads=self.threads, flip=onet_flip)
        self._input_size: tuple[int, int] | None = None

    def _open(self, nms_threshold: float, top_k: int):
        if self.backend == "onnxruntime":
            from .yunet_ort import OrtYuNet

            return OrtYuNet(
                self.model_path, self.score_threshold, nms_threshold, top_k, self.threads
            )
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
            f"backend={self.backend!r}, detect_sides={self.detect_sides}, "
            f"low_light={self.low_light})"
        )

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Every face found, best first; see the class docstring for the passes."""
        faces = self._detect_pass(image_rgb)
        if faces or not self.low_light:
            return faces
        from .lighting import detect_in_bad_light

        return detect_in_bad_light(self._detect_pass, image_rgb, self.max_side)

    def _detect_pass(self, image_rgb: np.ndarray) -> list[Face]:
        """One search of ``image_rgb``; with ``landmarks="onet"`` ONet then measures the points."""
        faces = self._find(image_rgb)
        return self._onet.refine(image_rgb, faces) if self._onet is not None else faces

    def _find(self, image_rgb: np.ndarray) -> list[Face]:
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape}")
        halvings = None
        for side in self.detect_sides:
            if max(image.shape[:2]) <= side:
                break
            if halvings is None:
                halvings = _halvings(image, self.detect_sides[0])
            faces = self._detect_shrunk(halvings, side)
            if faces:
                return faces
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

    def _detect_shrunk(self, halvings: list[Level], side: int) -> list[Face]:
        """Faces found on a copy shrunk to ``side``; small and large ones measured again."""
        levels = _shrunk(halvings, side)
        small, fx, fy = levels[-1]
        factor = np.array([fx, fy])
        faces = []
        for rank, row in enumerate(self._run(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))):
            box = (row[:4].reshape(2, 2) / factor).reshape(4)
            landmarks = (row[4:14].reshape(5, 2) + 0.5) / factor - 0.5
            seen = max(row[2] - row[0], row[3] - row[1])  # box side in the copy's pixels
            again = seen < MEASURE_MIN or seen > REFINE_ABOVE * REFINE_FACE_SIZE
            if self.refine and rank < REFINE_MAX_FACES and again:
                remeasured = self._remeasure(levels, box)
                if remeasured is not None:
                    box, landmarks = remeasured
            if self.landmark_style == "mtcnn":
                landmarks = convert_landmarks(landmarks, YUNET_OFFSETS)
            faces.append(Face(box, float(row[14]), landmarks))
        faces.sort(key=lambda f: -f.score)
        return faces

    def _remeasure(
        self, levels: list[Level], box: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Detect again in a patch where the face has its full-size detection's size.

        That is its own size up to ``REFINE_ABOVE * REFINE_FACE_SIZE`` pixels, and
        ``REFINE_FACE_SIZE`` above (as :meth:`_refine`). The patch is sampled bilinearly from
        the smallest pyramid level at least that fine, so no level is ever shrunk by 2x or more.
        """
        side = float(max(box[2] - box[0], box[3] - box[1]))
        if side <= 0:
            return None
        scale = REFINE_FACE_SIZE / side if side > REFINE_ABOVE * REFINE_FACE_SIZE else 1.0
        centre = (box[:2] + box[2:]) / 2.0
        shift = (REFINE_PATCH - 1) / 2.0 - scale * centre
        if scale == 1.0:
            # A plain copy of the photo's pixels, moved by whole multiples of YuNet's coarsest
            # stride: the network then sees the face on the same anchor grid as at full size.
            shift = np.round(shift / STRIDE) * STRIDE
        source, fx, fy = next(
            (lv for lv in reversed(levels) if min(lv[1], lv[2]) >= scale * (1 - 1e-9)),
            levels[0],
        )
        # Patch pixel u = scale * p + shift, with p = (q + 0.5) / f - 0.5 for level pixel q.
        f = np.array([fx, fy])
        linear = scale / f
        offset = scale * (0.5 / f - 0.5) + shift
        matrix = np.array([[linear[0], 0.0, offset[0]], [0.0, linear[1], offset[1]]])
        patch = cv2.warpAffine(
            source,
            matrix,
            (REFINE_PATCH, REFINE_PATCH),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        rows = self._run(cv2.cvtColor(patch, cv2.COLOR_RGB2BGR))
        if len(rows) == 0:
            return None
        centres = (rows[:, 0:2] + rows[:, 2:4]) / 2.0
        best = rows[np.argmin(((centres - (REFINE_PATCH - 1) / 2.0) ** 2).sum(axis=1))]
        new_side = max(best[2] - best[0], best[3] - best[1])
        if not 0.6 < new_side / (scale * side) < 1.6:
            return None  # not the same face
        to_image = lambda pts: (pts - shift) / scale  # noqa: E731
        return (
            to_image(best[:4].reshape(2, 2)).reshape(4),
            to_image(best[4:14].reshape(5, 2)),
        )

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
        back[:, 4:14] = points[:, LANDMARK_MIRROR].reshape(-1, 10)
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


def _halvings(image: np.ndarray, side: int) -> list[Level]:
    """``image`` and its exact halvings (2x2 box means: OpenCV's fast path, about 10x cheaper
    than its general area resampling) while the longer side is at least ``2 * side``, each with
    its scale factors ``(fx, fy)``: level pixel ``q = (p + 0.5) * f - 0.5`` for photo pixel
    ``p``."""
    levels = [(image, 1.0, 1.0)]
    current, fx, fy = image, 1.0, 1.0
    while max(current.shape[:2]) >= 2 * side:
        h, w = current.shape[:2]
        even = current[: h - h % 2, : w - w % 2]  # a dropped odd edge row leaves p -> q exact
        current = cv2.resize(even, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        fx, fy = fx / 2, fy / 2
        levels.append((current, fx, fy))
    return levels


def _shrunk(halvings: list[Level], side: int) -> list[Level]:
    """The halvings down to the last one at least ``side`` long, then (unless it is exactly
    that) one bilinear step of less than 2x to ``side``: the last level is the copy to search."""
    levels = [lv for lv in halvings if max(lv[0].shape[:2]) >= side] or halvings[:1]
    current, fx, fy = levels[-1]
    h, w = current.shape[:2]
    if max(h, w) > side:
        k = side / max(h, w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        current = cv2.resize(current, size, interpolation=cv2.INTER_LINEAR)
        levels = [*levels, (current, fx * size[0] / w, fy * size[1] / h)]
    return levels


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
