"""Aligned face crops to network input: ``H x W x 3`` uint8 RGB in, ``N x 3 x H x W`` float32 out.

Every embedder states its :class:`Normalization`: the network sees
``(pixel - mean) / std`` in RGB order (BGR when ``bgr`` is set). ``mean`` and ``std`` are one
number or three (one per channel, in the order the network sees the channels). Ours, like most
MobileFaceNets, use ``mean=127.5, std=128`` on RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobileface.errors import ImageError

Number = float | tuple[float, float, float]


@dataclass(frozen=True)
class Normalization:
    """Input scaling of a network: ``(pixel - mean) / std``, channels RGB (or BGR if ``bgr``)."""

    mean: Number = 127.5
    std: Number = 128.0
    bgr: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _number(self.mean, "mean"))
        object.__setattr__(self, "std", _number(self.std, "std"))
        object.__setattr__(self, "bgr", bool(self.bgr))
        if np.any(np.asarray(self.std, dtype=np.float64) == 0):
            raise ValueError("normalization std must not be zero")

    def replace(
        self, *, mean: Any = None, std: Any = None, bgr: bool | None = None
    ) -> Normalization:
        """A copy with the given fields changed (``None`` keeps a field)."""
        return Normalization(
            self.mean if mean is None else mean,
            self.std if std is None else std,
            self.bgr if bgr is None else bgr,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _plain(self.mean), "std": _plain(self.std), "bgr": self.bgr}

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """``N x H x W x 3`` uint8 crops -> ``N x 3 x H x W`` float32 network input."""
        x = np.asarray(crops)
        if self.bgr:
            x = x[..., ::-1]
        out = np.empty((x.shape[0], 3, x.shape[1], x.shape[2]), dtype=np.float32)
        mean = np.broadcast_to(np.asarray(self.mean, dtype=np.float32), (3,))
        scale = 1.0 / np.broadcast_to(np.asarray(self.std, dtype=np.float32), (3,))
        for c in range(3):  # per channel: no N x H x W x 3 float temporary
            np.subtract(x[..., c], mean[c], out=out[:, c], dtype=np.float32)
            out[:, c] *= scale[c]
        return out


def _number(value: Any, label: str) -> Number:
    if isinstance(value, str):
        parts = [p for p in value.replace(",", " ").split() if p]
        value = parts[0] if len(parts) == 1 else parts
    if isinstance(value, (list, tuple, np.ndarray)):
        values = tuple(float(v) for v in value)
        if len(values) == 1:
            return values[0]
        if len(values) != 3:
            raise ValueError(f"normalization {label} needs 1 or 3 values, got {len(values)}")
        return values  # type: ignore[return-value]
    return float(value)


def _plain(value: Number) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def as_crop_batch(crops: Any, input_size: tuple[int, int]) -> np.ndarray:
    """Check and stack ``crops`` into one ``N x H x W x 3`` uint8 array.

    ``crops`` is one ``H x W x 3`` crop, an ``N x H x W x 3`` array, or a sequence of crops.
    Crops must be uint8 RGB of exactly ``input_size`` (height, width): they are aligned faces,
    and resizing them here would hide a pipeline mistake. Raises :class:`ImageError` saying
    which crop is wrong and what was expected.
    """
    h, w = input_size
    if isinstance(crops, np.ndarray):
        batch = crops[None] if crops.ndim == 3 else crops
        if batch.ndim != 4:
            raise ImageError(
                f"crops must be H x W x 3 or N x H x W x 3 arrays, got shape {crops.shape}"
            )
        _check_crop(batch, None, h, w)
        return np.ascontiguousarray(batch)
    if isinstance(crops, Sequence) and not isinstance(crops, (str, bytes)):
        if len(crops) == 0:
            return np.zeros((0, h, w, 3), dtype=np.uint8)
        items = [np.asarray(c) for c in crops]
        for i, item in enumerate(items):
            if item.ndim != 3:
                raise ImageError(f"crop {i}: expected an H x W x 3 array, got shape {item.shape}")
            _check_crop(item[None], i, h, w)
        return np.stack(items)
    raise ImageError(f"crops must be arrays, got {type(crops).__name__}")


def _check_crop(batch: np.ndarray, index: int | None, h: int, w: int) -> None:
    which = "crops" if index is None else f"crop {index}"
    shape = batch.shape[1:]
    if shape != (h, w, 3):
        raise ImageError(
            f"{which}: shape {'x'.join(map(str, shape))}, but this model takes {h}x{w}x3 "
            "aligned RGB crops (align faces to the model's input size first)"
        )
    if batch.dtype != np.uint8:
        raise ImageError(f"{which}: dtype {batch.dtype}, expected uint8 RGB pixels")
