"""Five-point templates and the similarity transform that maps detected landmarks onto them.

Points are ``(x, y)`` pixel coordinates in the order left eye, right eye, nose tip, left mouth
corner, right mouth corner, where "left" is image-left (the subject's right). Sizes are
``(height, width)`` everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
"""The standard ArcFace (InsightFace) 5-point template for 112x112 crops."""

ARCFACE_TEMPLATE_112x96 = ARCFACE_TEMPLATE_112 - np.array([8.0, 0.0], dtype=np.float32)
"""The 112x96 template (SphereFace/CosFace, MobileFaceNet's 112x96 input): the 112x112 one
with 8 pixels taken off each side."""

CENTERED_FACE_POINTS = np.array(
    [
        [0.4152, 0.4493],
        [0.5910, 0.4480],
        [0.5055, 0.5470],
        [0.4320, 0.6232],
        [0.5816, 0.6212],
    ],
    dtype=np.float32,
)
"""Where the 5 points lie, as fractions of width and height, in a face-centred crop such as
LFW's 250x250 deep-funneled images (median of YuNet's landmarks over the 9,056 LFW images of
the pair files). Used by the ``center`` fallback when no face is detected."""


def convert_landmarks(landmarks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move a detector's 5 points onto another landmark convention.

    ``offsets`` (5x2) is where the detector's points sit, on average, relative to the ArcFace
    template in a 112x112 crop aligned with the reference convention (MTCNN's, which the
    template and most training sets follow). Each point is moved by its offset, carried into
    image pixels by the face's own scale and rotation, so aligning the result onto the template
    gives the crop the reference detector would have given.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    offsets = np.asarray(offsets, dtype=np.float64).reshape(5, 2)
    moved = points
    # The face's scale and rotation are those of the moved points: a fixed point, reached in a
    # few steps (each shrinks the error by about the offsets' size relative to the face's).
    for _ in range(4):
        linear = estimate_similarity(moved, ARCFACE_TEMPLATE_112)[:, :2]
        moved = points - offsets @ np.linalg.inv(linear).T
    return moved.astype(np.float32)


def template_for(size: tuple[int, int]) -> np.ndarray:
    """The 5-point template for a crop of ``size = (height, width)`` pixels.

    112x112 is ArcFace's template and 112x96 the standard 112x96 one. Any other size (96x96,
    for instance) gets the 112x112 template scaled by ``min(height, width) / 112`` and centred,
    so the crop shows the same part of the face as a 112x112 crop, at another resolution.
    """
    height, width = _check_size(size)
    if (height, width) == (112, 112):
        return ARCFACE_TEMPLATE_112.copy()
    if (height, width) == (112, 96):
        return ARCFACE_TEMPLATE_112x96.copy()
    scale = min(height, width) / 112.0
    offset = np.array([(width - 112.0 * scale) / 2.0, (height - 112.0 * scale) / 2.0])
    return (ARCFACE_TEMPLATE_112.astype(np.float64) * scale + offset).astype(np.float32)


def estimate_similarity(src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) from
    ``src_points`` to ``dst_points`` (Umeyama 1991, reflections excluded); a 2x3 matrix.

    ``dst ~= M[:, :2] @ src + M[:, 2]`` for each point.
    """
    src = np.asarray(src_points, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_points, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(
            f"need the same number (>= 2) of source and destination points, "
            f"got {src.shape} and {dst.shape}"
        )
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("source points are all at one place: no transform is defined")
    # In 2-D, Umeyama's rotation and scale are the complex least-squares factor
    # c = a + ib = sum(conj(src) * dst) / sum(|src|^2) (same solution, no SVD: 3x faster).
    norm = src_var * len(src)
    a = float((src_c * dst_c).sum() / norm)
    b = float((src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum() / norm)
    linear = np.array([[a, -b], [b, a]])
    t = dst_mean - linear @ src_mean
    return np.hstack([linear, t[:, None]])


def align_face(
    image_rgb: np.ndarray,
    landmarks: np.ndarray,
    size: tuple[int, int] = (112, 112),
    *,
    roi: bool = False,
) -> np.ndarray:
    """Warp ``image_rgb`` so that ``landmarks`` (5x2) land on :func:`template_for` ``(size)``.

    Returns a ``height x width x 3`` uint8 RGB crop; pixels from outside the image are black.
    A face shrunk by more than 2x is area-averaged first; with ``roi`` only the part of the
    photo the crop samples is (``verify`` does so: 10x faster for a large face in a 1280x720
    photo; the crop then differs from the whole-photo one by resampling noise alone).
    """
    height, width = _check_size(size)
    matrix = estimate_similarity(landmarks, template_for((height, width)))
    return _warp(image_rgb, matrix, height, width, roi=roi)


def loose_crop(
    image_rgb: np.ndarray,
    box: np.ndarray,
    size: int | tuple[int, int] = 113,
    enlarge: float = 0.3,
) -> np.ndarray:
    """SqueezeFacePoseNet's loose crop: the detector box enlarged by ``enlarge`` (30%, as the
    VGGFace2 crops are), made square around its centre, resized to ``size``.

    No landmarks are used, so the head keeps its in-plane rotation. Parts of the square that
    fall outside the image are black.
    """
    height, width = _check_size((size, size) if isinstance(size, int) else size)
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box must have x2 > x1 and y2 > y1, got {[x1, y1, x2, y2]}")
    side = max(x2 - x1, y2 - y1) * (1.0 + enlarge)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    sx, sy = width / side, height / side
    matrix = np.array([[sx, 0.0, width / 2.0 - sx * cx], [0.0, sy, height / 2.0 - sy * cy]])
    return _warp(image_rgb, matrix, height, width)


def center_crop(image_rgb: np.ndarray, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """The crop an aligned face would give if the face sat where it does in a face-centred
    image such as LFW's (see :data:`CENTERED_FACE_POINTS`): the fallback for no detection."""
    h, w = image_rgb.shape[:2]
    points = CENTERED_FACE_POINTS * np.array([w, h], dtype=np.float32)
    return align_face(image_rgb, points, size)


def parse_size(text: str) -> tuple[int, int]:
    """``"112x96"`` -> ``(112, 96)`` (height x width); a single number means a square."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) == 1:
            value = int(parts[0])
            return _check_size((value, value))
        if len(parts) == 2:
            return _check_size((int(parts[0]), int(parts[1])))
    except ValueError:
        pass
    raise ValueError(f"size must look like 112x112 (height x width), got {text!r}")


def _check_size(size) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise ValueError(f"size must be between 8 and 4096 pixels a side, got {height}x{width}")
    return height, width


def _warp(
    image_rgb: np.ndarray, matrix: np.ndarray, height: int, width: int, roi: bool = False
) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
    # Bicubic sampling (on LFW View 1 with the peer model it matches or beats bilinear). Shrinking
    # by more than 2x aliases with any kernel this small: area-average down first, then warp.
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5 and roi:
        image, matrix = _region_sampled(image, matrix, height, width, scale)
    if scale < 0.5:
        # A small-image pixel q covers original pixels around p = f * (q + 0.5) - 0.5.
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * 2.0 * scale)), max(1, round(h * 2.0 * scale))
        f = np.array([w / new_w, h / new_h])
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        linear = matrix[:, :2]
        matrix = np.hstack([linear * f, (matrix[:, 2] + linear @ (0.5 * (f - 1.0)))[:, None]])
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix.astype(np.float64),
        (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _region_sampled(
    image: np.ndarray, matrix: np.ndarray, height: int, width: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image`` a warp by ``matrix`` to ``width x height`` reads, with the matrix
    moved onto it: the output's corners mapped back, plus a margin wider than the area
    prefilter's and the bicubic kernel's reach (4 output pixels)."""
    inverse = cv2.invertAffineTransform(matrix.astype(np.float64))
    margin = 4.0 / scale
    corners = np.array([[-0.5, -0.5, 1], [width - 0.5, -0.5, 1], [-0.5, height - 0.5, 1]])
    corners = np.vstack([corners, [width - 0.5, height - 0.5, 1]])
    points = corners @ inverse.T
    h, w = image.shape[:2]
    x0, y0 = np.floor(points.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + margin).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, matrix  # the crop lies (almost) off the photo: nothing to save
    moved = matrix.astype(np.float64).copy()
    moved[:, 2] += moved[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return image[y0:y1, x0:x1], moved
