"""Training augmentations: shape and dtype kept, seeded reproducibility, each does its job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mobileface.data.augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    LowResolution,
    ScaleCropJitter,
    default_train_augment,
)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:112, 0:112]
    base = np.stack([x * 2, y * 2, (x + y)], axis=2) % 256
    return np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)


ALL = [
    HorizontalFlip(p=1),
    ScaleCropJitter(p=1),
    ColorJitter(p=1),
    GaussianBlur(p=1),
    Grayscale(p=1),
    LowResolution(p=1),
]


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
def test_each_keeps_shape_and_dtype_and_changes_the_image(transform, face) -> None:
    out = transform(face, np.random.default_rng(1))
    assert out.shape == face.shape and out.dtype == np.uint8
    assert not np.array_equal(out, face)


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
def test_probability_zero_is_the_identity(transform, face) -> None:
    off = type(transform)(**{**transform.__dict__, "p": 0.0})
    assert off(face, np.random.default_rng(1)) is face


def test_flip_and_grayscale_do_what_they_say(face) -> None:
    rng = np.random.default_rng(0)
    assert np.array_equal(HorizontalFlip(p=1)(face, rng), face[:, ::-1])
    gray = Grayscale(p=1)(face, rng)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_blur_and_low_resolution_remove_detail(face) -> None:
    rng = np.random.default_rng(0)

    def detail(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img.astype(float), axis=1)).mean())

    assert detail(GaussianBlur(p=1)(face, rng)) < detail(face) * 0.8
    assert detail(LowResolution(p=1, scale=(0.25, 0.25))(face, rng)) < detail(face) * 0.8


def test_scale_jitter_keeps_the_centre(face) -> None:
    out = ScaleCropJitter(scale=(1.2, 1.2), shift=0.0, p=1)(face, np.random.default_rng(0))
    assert np.abs(out[56, 56].astype(int) - face[56, 56].astype(int)).max() <= 30


def test_compose_is_reproducible_from_a_seed(face) -> None:
    a = default_train_augment(seed=7, strong=True)
    b = default_train_augment(seed=7, strong=True)
    outs_a = [a(face) for _ in range(5)]
    outs_b = [b(face) for _ in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert not all(np.array_equal(outs_a[0], o) for o in outs_a[1:])
    rng = np.random.default_rng(3)
    c = Compose(ALL)
    assert np.array_equal(c(face, np.random.default_rng(3)), c(face, rng))
    assert "HorizontalFlip" in repr(c)


def test_rejects_non_rgb_uint8(face) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        HorizontalFlip()(face.astype(np.float32), np.random.default_rng(0))


def test_on_a_real_aligned_crop(data_dir: Path) -> None:
    from mobileface.image import load_image

    crops = sorted((data_dir / "celeba-test-112").glob("*/*.jpg"))[:4]
    if not crops:
        pytest.skip("celeba-test-112 missing")
    augment = default_train_augment(seed=0, strong=True)
    for path in crops:
        out = augment(load_image(path))
        assert out.shape == (112, 112, 3) and out.dtype == np.uint8
