"""Training augmentations on ``H x W x 3`` uint8 RGB arrays, NumPy and OpenCV only.

Every transform is a callable ``t(image, rng) -> image`` that keeps the image's size and dtype
and draws its randomness from the ``numpy.random.Generator`` it is given, so a run is
reproducible from one seed. :class:`Compose` chains them and owns a seeded generator:

```python
augment = Compose([HorizontalFlip(), ScaleCropJitter(), ColorJitter(), Grayscale(p=0.1)], seed=0)
out = augment(image)
```

In a multi-process data loader give each worker its own generator (``augment(image, rng)``),
for instance ``np.random.default_rng([seed, worker_id])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
    return image


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right with probability ``p``."""

    p: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _check(image)
        if rng.random() < self.p:
            return np.ascontiguousarray(image[:, ::-1])
        return image


@dataclass(frozen=True)
class ScaleCropJitter:
    """Zoom by a factor in ``scale`` and shift by up to ``shift`` of the size, with probability
    ``p``; the output keeps the input size (borders revealed by zooming out are black)."""

    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    p: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _check(image)
        if rng.random() >= self.p:
            return image
        h, w = image.shape[:2]
        s = rng.uniform(*self.scale)
        dx, dy = rng.uniform(-self.shift, self.shift, size=2) * (w, h)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        matrix = np.array([[s, 0.0, cx - s * cx + dx], [0.0, s, cy - s * cy + dy]])
        return cv2.warpAffine(
            image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation (each a factor in ``1 +- amount``), in
    random order, with probability ``p``."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    p: float = 0.8

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _check(image)
        if rng.random() >= self.p:
            return image
        out = image.astype(np.float32)
        for op in rng.permutation(3):
            if op == 0 and self.brightness > 0:
                out = out * rng.uniform(1 - self.brightness, 1 + self.brightness)
            elif op == 1 and self.contrast > 0:
                mean = _gray(out).mean()
                out = (out - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
            elif op == 2 and self.saturation > 0:
                gray = _gray(out)[:, :, None]
                out = (out - gray) * rng.uniform(1 - self.saturation, 1 + self.saturation) + gray
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GaussianBlur:
    """Gaussian blur with sigma drawn from ``sigma``, with probability ``p``."""

    sigma: tuple[float, float] = (0.5, 1.5)
    p: float = 0.1

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _check(image)
        if rng.random() >= self.p:
            return image
        return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(*self.sigma)))


@dataclass(frozen=True)
class Grayscale:
    """Convert to gray (kept as 3 channels) with probability ``p``."""

    p: float = 0.1

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _check(image)
        if rng.random() >= self.p:
            return image
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


@dataclass(frozen=True)
class LowResolution:
    """Shrink by a factor in ``scale`` and enlarge back (a low-resolution camera), with
    probability ``p``."""

    scale: tuple[float, float] = (0.25, 0.75)
    p: float = 0.1

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _check(image)
        if rng.random() >= self.p:
            return image
        h, w = image.shape[:2]
        s = rng.uniform(*self.scale)
        small = cv2.resize(
            image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
        up = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)[int(rng.integers(3))]
        return cv2.resize(small, (w, h), interpolation=up)


class Compose:
    """Apply ``transforms`` in order, drawing from ``rng`` or from the generator seeded by
    ``seed`` that the instance owns."""

    def __init__(self, transforms: Sequence, seed: int | None = None) -> None:
        self.transforms = list(transforms)
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = self.rng if rng is None else rng
        out = _check(image)
        for transform in self.transforms:
            out = transform(out, rng)
        return out

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def default_train_augment(seed: int | None = None, *, strong: bool = False) -> Compose:
    """The usual face-recognition recipe: flip, mild scale/shift and colour jitter; with
    ``strong``, also blur, grayscale and low resolution (for low-quality target cameras)."""
    transforms: list = [HorizontalFlip(), ScaleCropJitter(), ColorJitter()]
    if strong:
        transforms += [GaussianBlur(p=0.2), Grayscale(p=0.2), LowResolution(p=0.2)]
    return Compose(transforms, seed=seed)


def _gray(image: np.ndarray) -> np.ndarray:
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
