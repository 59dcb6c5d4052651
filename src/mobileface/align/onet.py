"""A second landmark pass: MTCNN's ONet measures the 5 points again on the detector's box.

YuNet finds faces quickly and reliably, but its 5 points follow WIDER FACE's annotation (mouth
corners on the lip line) and move by about 5% of the eye distance from one view of a face to
the next. ONet (the last stage of MTCNN, Zhang et al. 2016: a 48x48 RGB patch in; face
probability, box regression and 5 points out) measures MTCNN's points on the square around
YuNet's box, which frames the face as MTCNN's own cascade does (ONet's box regression moves it
by under 1% on average over LFW). On LFW, crops aligned on these points are told apart better
by every embedder tried than crops aligned on YuNet's points, even averaged over 6 views
(README, "Alignment").

The weights are facenet-pytorch's (MIT), converted once by ``scripts/convert_onet.py`` and
shipped as ``mobileface/assets/onet.onnx`` (notice and checksums in ``assets/MTCNN_LICENSE``);
ONNX Runtime runs them: about 0.4 ms a face on one thread here, patch included (0.25 ms of it
the network), 0.6 ms with the mirror. Nothing here imports PyTorch.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelFileError
from .face import LANDMARK_MIRROR, Face

ONET_FILE = "onet.onnx"
ONET_SHA256 = "1553f16153c71f4961df0ef7b72d07de4a4099b60fc704f230381a4fbbedebde"
ONET_ENV = "MOBILEFACE_ONET"
BUNDLED_ONET = Path(__file__).resolve().parents[1] / "assets" / ONET_FILE
INPUT = 48


def onet_model_path(model_path: str | Path | None = None) -> Path:
    """The ONet file: ``model_path``, else ``$MOBILEFACE_ONET``, else the package's copy."""
    chosen = model_path or os.environ.get(ONET_ENV) or BUNDLED_ONET
    path = Path(chosen)
    if not path.is_file():
        where = "" if model_path else f" (set by ${ONET_ENV})" if os.environ.get(ONET_ENV) else ""
        raise ModelFileError(f"{path}{where}: ONet model file not found")
    return path


class OnetRefiner:
    """Measure each face's 5 points again with MTCNN's ONet on the detector's box.

    ONet sees the square around the box's centre whose side is the box's longer side, and,
    with ``flip`` (default), its mirror image too: the points are the mean of the two (ONet's
    points move by about 1% of the face between the two views; the mean is steadier and
    left-right symmetric). Faces ONet scores under ``min_prob`` keep the detector's points
    (profiles, occlusions, which ONet was not trained on); boxes and scores stay the
    detector's. All faces of a photo go through the network in one call. Thread-safe (ONNX
    Runtime's session is).
    """

    name = "onet"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        flip: bool = True,
        min_prob: float = 0.5,
        threads: int = 1,
    ) -> None:
        from mobileface.runtime.embedder import open_session

        self.model_path = onet_model_path(model_path)
        self.session = open_session(self.model_path, threads)
        names = [o.name for o in self.session.get_outputs()]
        shape = self.session.get_inputs()[0].shape
        if names != ["box", "points", "prob"] or list(shape[1:]) != [3, INPUT, INPUT]:
            raise ModelFileError(f"{self.model_path}: not an ONet model (see convert_onet.py)")
        self.input_name = self.session.get_inputs()[0].name
        if not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"min_prob must lie in [0, 1], got {min_prob}")
        self.flip = bool(flip)
        self.min_prob = float(min_prob)

    def __repr__(self) -> str:
        return f"OnetRefiner({str(self.model_path)!r}, flip={self.flip}, min_prob={self.min_prob})"

    def refine(self, image_rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        """``faces`` with ONet's points where ONet sees a face; order, boxes and scores kept."""
        if not faces:
            return []
        squares = np.stack([_square(f.box) for f in faces])
        points, prob = self.measure(np.asarray(image_rgb), squares)
        return [
            face if p < self.min_prob else replace(face, landmarks=pts)
            for face, pts, p in zip(faces, points, prob, strict=True)
        ]

    def measure(self, image: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ONet on each square ``(x1, y1, x2, y2)`` of whole pixels: ``N x 5 x 2`` points in
        image pixels and ``N`` face probabilities."""
        patches = [_patch(image, s) for s in squares]
        if self.flip:
            patches += [p[:, ::-1] for p in patches]
        # (x - 127.5) * 0.0078125 as N x 3 x 48 x 48 float32, in one OpenCV call
        x = cv2.dnn.blobFromImages(patches, 0.0078125, mean=(127.5, 127.5, 127.5))
        points, prob = self.session.run(["points", "prob"], {self.input_name: x})
        frac = points.reshape(-1, 2, 5).transpose(0, 2, 1)  # fractions of the square, (x, y)
        prob = prob[:, 1]
        if self.flip:
            n = len(squares)
            mirrored = frac[n:, LANDMARK_MIRROR]
            mirrored[:, :, 0] = 1.0 - mirrored[:, :, 0]
            frac, prob = (frac[:n] + mirrored) / 2.0, (prob[:n] + prob[n:]) / 2.0
        side = (squares[:, 2] - squares[:, 0])[:, None, None]
        return (squares[:, None, :2] + frac * side).astype(np.float32), prob


def _square(box: np.ndarray) -> np.ndarray:
    """The square of whole pixels around ``box``'s centre, as long as its longer side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1.0, round(max(x2 - x1, y2 - y1)))
    left = np.floor((x1 + x2) / 2.0 - side / 2.0 + 0.5)
    top = np.floor((y1 + y2) / 2.0 - side / 2.0 + 0.5)
    return np.array([left, top, left + side, top + side])


def _patch(image: np.ndarray, square: np.ndarray) -> np.ndarray:
    """The ``square`` (whole pixels; zeros outside the image) area-resampled to 48x48."""
    x1, y1, x2, y2 = (int(v) for v in square)
    h, w = image.shape[:2]
    if x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h:
        crop = image[y1:y2, x1:x2]
    else:
        crop = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if sx2 > sx1 and sy2 > sy1:
            crop[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
    method = cv2.INTER_AREA if crop.shape[0] >= INPUT else cv2.INTER_LINEAR
    return cv2.resize(crop, (INPUT, INPUT), interpolation=method)
