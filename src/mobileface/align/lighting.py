"""Faces in bad light: a second detection pass on a contrast-restored copy of the photo.

A face lit harshly from one side, or nearly in the dark, leaves the detector little contrast,
and what there is drowns in sensor noise once brightened. When the first pass finds no face,
:func:`detect_in_bad_light` searches again on a restored copy: the photo (shrunk to the
detector's working size) smoothed by a small Gaussian (sensor noise is per pixel, a face's
edges are not), then its luminance equalised locally by CLAHE (colour kept). The faces found
there are mapped back to the original photo's pixels and marked ``found_by="low_light"``.

Photos whose first pass finds a face never reach this code: the fallback costs them nothing.
On the relit LFW set (:mod:`mobileface.evaluation.relight`) this pass finds most of the faces
the first pass misses; see ``benchmarks/bench_light.py`` and the README's "Bad light".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .face import Face

FOUND_BY_PHOTO = "photo"
"""``Face.found_by`` of a face found in the photo as given (the first pass)."""
FOUND_BY_LOW_LIGHT = "low_light"
"""``Face.found_by`` of a face found only in the contrast-restored copy."""

DENOISE_SIGMA = 2.0
"""Gaussian smoothing (pixels of the working copy) before the contrast is restored."""
CLAHE_CLIP = 4.0
CLAHE_TILES = 8
WORK_SIDE = 1280
"""Photos are restored on a copy no longer than this (YuNet's own working size)."""


def restore_contrast(
    image_rgb: np.ndarray,
    sigma: float = DENOISE_SIGMA,
    clip: float = CLAHE_CLIP,
    tiles: int = CLAHE_TILES,
) -> np.ndarray:
    """``image_rgb`` smoothed by a Gaussian of ``sigma`` px, then CLAHE on its luminance.

    Colour is kept (the chroma of YCrCb is untouched); a gray photo stays gray.
    """
    import cv2

    image = np.ascontiguousarray(image_rgb)
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    clahe = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles)))
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    ycc[:, :, 0] = clahe.apply(np.ascontiguousarray(ycc[:, :, 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def working_copy(image_rgb: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """``image_rgb`` shrunk (area-averaged) so its longer side is at most ``side``, and the
    factor it was shrunk by (1.0 when it was not)."""
    import cv2

    h, w = image_rgb.shape[:2]
    if max(h, w) <= side:
        return image_rgb, 1.0
    factor = side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA), factor


def to_photo(face: Face, factor: float, found_by: str) -> Face:
    """``face`` found in a copy shrunk by ``factor``, in the photo's pixels, marked
    ``found_by``. Box edges scale as they are; pixel centres as ``(q + 0.5) / factor - 0.5``."""
    if factor == 1.0:
        return replace(face, found_by=found_by)
    return replace(
        face,
        box=np.asarray(face.box, np.float64) / factor,
        landmarks=(np.asarray(face.landmarks, np.float64) + 0.5) / factor - 0.5,
        found_by=found_by,
    )


def detect_in_bad_light(
    detect_once: Callable[[np.ndarray], list[Face]],
    image_rgb: np.ndarray,
    side: int | None = WORK_SIDE,
) -> list[Face]:
    """The faces ``detect_once`` finds in the contrast-restored copy of ``image_rgb``, in the
    photo's pixels and marked :data:`FOUND_BY_LOW_LIGHT`; ``[]`` if none.

    The copy is restored at most ``side`` pixels long (``None``: :data:`WORK_SIDE`). Call it
    only after the first pass on ``image_rgb`` found nothing."""
    work, factor = working_copy(image_rgb, side or WORK_SIDE)
    faces = detect_once(restore_contrast(work))
    return [to_photo(f, factor, FOUND_BY_LOW_LIGHT) for f in faces]


DARK_CROP_MEAN = 40.0
DARK_CROP_STD = 15.0
"""A crop whose luminance (0..255) averages under ``DARK_CROP_MEAN`` or spreads (standard
deviation) under ``DARK_CROP_STD`` is dark or flat: :func:`normalise_crop` restores it. Chosen
on LFW View 1 (development): no crop of LFW's own photos is that dark (their 1st percentiles
are 68 and 30), three in four crops of the relit photos are (medians 24 and 11); looser bounds
(70 and 30) caught 40 ordinary crops for no gain on the relit ones."""
CROP_NORM_VERSION = "dark-clahe-1"
"""Names :func:`normalise_crop`'s settings in embedding cache keys: change it with them."""
CROP_SIGMA = 1.0
CROP_CLIP = 2.0
CROP_TILES = 4


def is_dark_crop(crop_rgb: np.ndarray) -> bool:
    """Whether an aligned crop is too dark or too flat for the embedder (see
    :data:`DARK_CROP_MEAN`)."""
    import cv2

    luma = cv2.cvtColor(np.ascontiguousarray(crop_rgb), cv2.COLOR_RGB2GRAY)
    return float(luma.mean()) < DARK_CROP_MEAN or float(luma.std()) < DARK_CROP_STD


def normalise_crop(crop_rgb: np.ndarray) -> np.ndarray:
    """An aligned crop ready to embed: a dark or flat one (:func:`is_dark_crop`) smoothed by a
    Gaussian of 1 px and equalised by CLAHE (4x4 tiles), any other returned as it is.

    Embedders learn from well-lit faces; a face from a dark photo comes out of alignment dim
    and noisy, and restoring its contrast brings it back to what they know. Crops of ordinary
    photos are left untouched, so their embeddings do not change.
    """
    if not is_dark_crop(crop_rgb):
        return crop_rgb
    return restore_contrast(crop_rgb, sigma=CROP_SIGMA, clip=CROP_CLIP, tiles=CROP_TILES)
