"""InsightFace verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``...): a pickle of
``(list of encoded images, list of same/different flags)``, images in pairs.

Pickles can run code on load, so these are read through a restricted unpickler that builds
nothing but plain data (bytes, strings, lists, tuples, numbers, bools) and NumPy arrays; any
other global, ``os.system`` included, is refused before it is called. Files written by
Python 2 (their images are ``str``) are read as bytes.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataFormatError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles of ``bytes`` call (``_codecs.encode``), restricted to latin-1."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode refused for encoding {encoding!r}")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, label: str) -> None:
        super().__init__(file, encoding="bytes")
        self._label = label
        self._allowed = _allowed()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataFormatError(
                f"{self._label}: refused to load {module}.{name}: a verification .bin may "
                "hold only image bytes, lists, bools and NumPy arrays (a hostile or foreign "
                "pickle)"
            ) from None


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Read a verification ``.bin``: ``(encoded images, same flags)``, ``2 * len(flags)``
    images, pair ``i`` being images ``2i`` and ``2i + 1``.

    Raises :class:`DataFormatError` naming the file for anything else, without running code.
    """
    path = Path(path)
    label = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{label}: no such file") from None
    except OSError as exc:
        raise DataFormatError(f"{label}: cannot read: {exc}") from None
    if not data:
        raise DataFormatError(f"{label}: empty file (0 bytes)")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), label).load()
    except DataFormatError:
        raise
    except RecursionError:
        raise DataFormatError(f"{label}: pickle nests too deeply") from None
    except Exception as exc:  # truncated or garbled pickles raise many kinds of errors
        raise DataFormatError(
            f"{label}: not a verification .bin (unreadable pickle: {type(exc).__name__}: {exc})"
        ) from None
    return _validate(obj, label)


def _validate(obj, label: str) -> tuple[list[bytes], np.ndarray]:
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(f"{label}: expected a pair (images, same flags), got {_kind(obj)}")
    images_raw, flags_raw = obj
    if not isinstance(images_raw, (list, tuple, np.ndarray)):
        raise DataFormatError(f"{label}: images must be a list, got {_kind(images_raw)}")
    images: list[bytes] = []
    for i, item in enumerate(images_raw):
        if isinstance(item, (bytes, bytearray)):
            images.append(bytes(item))
        elif isinstance(item, np.ndarray) and item.dtype == np.uint8:
            images.append(item.tobytes())
        else:
            raise DataFormatError(f"{label}: image {i} is {_kind(item)}, not encoded bytes")
    try:
        flags = np.asarray(flags_raw)
    except Exception:
        raise DataFormatError(f"{label}: unreadable same/different flags") from None
    if flags.ndim != 1 or not (flags.dtype == np.bool_ or np.issubdtype(flags.dtype, np.integer)):
        raise DataFormatError(
            f"{label}: same/different flags must be a list of bools, got {_kind(flags_raw)}"
        )
    if np.issubdtype(flags.dtype, np.integer) and not np.isin(flags, (0, 1)).all():
        raise DataFormatError(f"{label}: same/different flags must be 0/1 or bools")
    if len(images) != 2 * len(flags):
        raise DataFormatError(
            f"{label}: {len(images)} images for {len(flags)} pairs (expected {2 * len(flags)})"
        )
    return images, flags.astype(bool)


def _kind(obj) -> str:
    if isinstance(obj, np.ndarray):
        return f"array {obj.dtype} {obj.shape}"
    return type(obj).__name__


def write_bin(path: str | Path, images: Sequence[bytes], same: Sequence[bool]) -> None:
    """Write a verification ``.bin`` as InsightFace does (pickle of ``(list[bytes],
    list[bool])``), atomically. ``images`` holds ``2 * len(same)`` encoded images."""
    images = [bytes(b) for b in images]
    flags = [bool(s) for s in same]
    if len(images) != 2 * len(flags):
        raise ValueError(f"{len(images)} images for {len(flags)} pairs: need two per pair")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump((images, flags), f, protocol=4)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
