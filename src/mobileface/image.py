"""Decode any image a user may hand us into one form: ``H x W x 3`` uint8 RGB.

Photos from phones carry an EXIF orientation, PNGs may have alpha, scans may be CMYK or
16-bit, benchmark crops may be grayscale; all of them come out as the same plain RGB array.
Every failure is an :class:`~mobileface.errors.ImageError` that names the file and says what
is wrong (empty, truncated, not an image, too many pixels), so a batch can report it and go on.

The pixel count is read from the file header *before* the pixels are decoded, so a small file
that claims a huge canvas (a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from .errors import ImageError

DEFAULT_MAX_PIXELS = 40_000_000
"""Refuse images with more pixels than this (40 MP: above any phone photo in common use)."""

EXIF_ORIENTATION = 0x0112

BACKGROUND_RGB = (255, 255, 255)
"""Colour that transparent pixels are composited onto."""

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
)
"""File extensions treated as images when listing directories (compared lower-case)."""


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Decode ``source`` (a path or the encoded bytes) to an ``H x W x 3`` uint8 RGB array.

    EXIF orientation is applied; alpha is composited onto white; 16-bit samples are scaled to
    8 bits; grayscale, palette and CMYK images are converted to RGB. ``name`` is the label used
    in error messages (defaults to the path, or ``<bytes>``).

    Raises :class:`ImageError` naming the file and the reason.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(source)
    else:
        path = Path(source)
        label = name or str(path)
        data = _read_file(path, label)
    if not data:
        raise ImageError(f"{label}: empty file (0 bytes)")

    with warnings.catch_warnings():
        # Pillow warns past its own bomb limit; we apply ours below, before decoding.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(
                f"{label}: not an image (unrecognised format, {len(data)} bytes)"
            ) from None
        except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
            raise ImageError(
                f"{label}: too many pixels: exceeds the limit of {max_pixels:,} (refused before "
                f"decoding: possible decompression bomb; {exc})"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{label}: unreadable image header: {exc}") from None

        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{label}: image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageError(
                f"{label}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                f"{max_pixels:,} (refused before decoding: possible decompression bomb)"
            )
        fast = _decode_plain_jpeg(img, data)
        if fast is not None:
            return fast
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{label}: too many pixels ({exc})") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            reason = str(exc) or type(exc).__name__
            kind = "truncated" if "truncated" in reason.lower() else "corrupt"
            raise ImageError(f"{label}: {kind} image data ({img.format}): {reason}") from None

        try:
            img = ImageOps.exif_transpose(img)
        except Exception as exc:  # a malformed EXIF block must not lose the image
            warnings.warn(f"{label}: EXIF orientation ignored: {exc}", stacklevel=2)
        return _to_rgb(img, label)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """An ``H x W`` uint8 gray image as ``H x W x 3`` RGB (the value in every channel)."""
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def rgb_array(image: np.ndarray, label: str = "image") -> np.ndarray:
    """An already decoded ``image`` as ``H x W x 3`` uint8 RGB: an ``H x W`` or ``H x W x 1``
    gray array is repeated into three channels; an RGB one is returned as is.

    Raises :class:`ImageError` naming ``label`` for any other shape or dtype.
    """
    array = np.asarray(image)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        return array
    if array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1)):
        gray = array.reshape(array.shape[:2])
        return gray_to_rgb(gray)
    raise ImageError(
        f"{label}: expected an H x W x 3 uint8 RGB array (or an H x W gray one), got "
        f"{array.dtype} {array.shape}"
    )


def _decode_plain_jpeg(img, data: bytes) -> np.ndarray | None:  # img: PIL.Image.Image
    """The common case, decoded by OpenCV's libjpeg-turbo: a complete RGB JPEG without EXIF
    rotation (about 3x faster than Pillow's decode and conversion). ``None``: anything else,
    including a file without its end marker, which Pillow then reports as truncated."""
    if (
        img.format != "JPEG"
        or img.mode != "RGB"
        or not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9")
    ):
        return None
    try:
        if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
            return None
    except Exception:  # a malformed EXIF block: Pillow's path warns about it
        return None
    import cv2

    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if bgr is None or bgr.shape[:2] != (img.height, img.width):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_file(path: Path, label: str) -> bytes:
    try:
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image file")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read file: {exc.strerror or exc}") from None


def _to_rgb(img, label: str) -> np.ndarray:  # img: PIL.Image.Image
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: scale the full range onto 0..255.
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return gray_to_rgb(gray)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return gray_to_rgb(gray)

    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
        img = Image.alpha_composite(background, rgba)
    try:
        rgb = img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{label}: cannot convert {mode} image to RGB: {exc}") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{label}: unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def save_image(path: str | Path, image_rgb: np.ndarray, *, jpeg_quality: int = 95) -> None:
    """Write ``image_rgb`` (``H x W x 3`` uint8 RGB) to ``path`` atomically (temp + rename).

    The format follows the suffix (``.png`` lossless with OpenCV's fast default compression,
    ``.jpg`` at ``jpeg_quality``).
    """
    import os
    import uuid

    import cv2

    path = Path(path)
    suffix = path.suffix.lower()
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(suffix or ".png", bgr, params)
    if not ok:
        raise ImageError(f"{path}: could not encode image as {suffix or '.png'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as out:
            out.write(encoded.tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
