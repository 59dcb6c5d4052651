"""A lighting test set: photos relit as a door camera or a phone sees faces at night.

Each photo gets, in this order: a directional shading mask (light from one side, falling off
to a dark floor), a tone curve ``v ** gamma`` with ``gamma`` log-uniform in 0.2..3 (washed out
to nearly black), an exposure gain log-uniform in 0.1..1 (full light to nearly dark), sensor
noise (read noise plus signal-dependent shot noise), 8-bit quantisation, most often a
conversion to grayscale (saved as a 1-channel file), and JPEG compression. The geometry is
untouched, so pair lists and landmarks of the source still apply.

Every image's lighting is drawn from a generator seeded by ``(seed, relative path)``: a set is
the same whichever subset or order it is built in, and the same on every machine.

LFW may be relit for evaluation only (never for training); CelebA and Pins crops may be relit
for development or training. Build a set with::

    python -m mobileface.evaluation.relight SRC OUT [--seed 17] [--pairs PAIRS]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEFAULT_SEED = 17
GAMMA_RANGE = (0.2, 3.0)
EXPOSURE_RANGE = (0.1, 1.0)
GRAY_SHARE = 0.75
"""Share of relit photos converted to grayscale (door and night cameras are mostly gray)."""


@dataclass(frozen=True)
class Lighting:
    """How one photo is relit (all fractions of full scale)."""

    angle: float  # direction the light comes from, radians (0: from image-right)
    floor: float  # brightness of the shadowed side relative to the lit side
    sharpness: float  # how abruptly the light falls off across the photo
    gamma: float  # tone curve v ** gamma: < 1 washes out, > 1 darkens
    exposure: float  # gain after the tone curve: 1 full light, 0.1 nearly dark
    read_noise: float  # Gaussian noise sigma
    shot_noise: float  # signal-dependent noise: sigma = shot_noise * sqrt(v)
    gray: bool
    jpeg_quality: int


def sample_lighting(rng: np.random.Generator, gray_share: float = GRAY_SHARE) -> Lighting:
    """A random lighting, harsh more often than not."""
    low, high = np.log(GAMMA_RANGE[0]), np.log(GAMMA_RANGE[1])
    return Lighting(
        angle=float(rng.uniform(0, 2 * np.pi)),
        floor=float(rng.uniform(0.02, 0.5)),
        sharpness=float(rng.uniform(2.0, 10.0)),
        gamma=float(np.exp(rng.uniform(low, high))),
        exposure=float(np.exp(rng.uniform(np.log(EXPOSURE_RANGE[0]), np.log(EXPOSURE_RANGE[1])))),
        read_noise=float(rng.uniform(0.003, 0.03)),
        shot_noise=float(rng.uniform(0.0, 0.04)),
        gray=bool(rng.random() < gray_share),
        jpeg_quality=int(rng.integers(70, 96)),
    )


def shading_mask(shape: tuple[int, int], lighting: Lighting) -> np.ndarray:
    """``H x W`` gain: 1 on the lit side, ``floor`` on the dark side, a sigmoid between."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x = 2 * x / max(w - 1, 1) - 1
    y = 2 * y / max(h - 1, 1) - 1
    along = x * np.cos(lighting.angle) + y * np.sin(lighting.angle)
    lit = 1.0 / (1.0 + np.exp(-lighting.sharpness * along))
    return (lighting.floor + (1.0 - lighting.floor) * lit).astype(np.float32)


def relight(image_rgb: np.ndarray, lighting: Lighting, rng: np.random.Generator) -> np.ndarray:
    """``image_rgb`` (``H x W x 3`` uint8) relit: ``H x W`` uint8 when gray, else RGB."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
    v = image.astype(np.float32) / 255.0
    v *= shading_mask(image.shape[:2], lighting)[:, :, None]
    v = np.power(v, lighting.gamma) * lighting.exposure
    sigma = np.sqrt(lighting.read_noise**2 + lighting.shot_noise**2 * v)
    v = v + sigma * rng.standard_normal(v.shape).astype(np.float32)
    out = np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)
    if lighting.gray:
        import cv2

        return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    return out


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one image: depends on the seed and the image's relative path only."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def relight_file(
    src: Path, dst: Path, name: str, seed: int, gray_share: float = GRAY_SHARE
) -> Lighting:
    """Relight one file into ``dst`` (JPEG; 1-channel when gray); returns its lighting."""
    import cv2

    from mobileface.image import load_image

    rng = image_rng(seed, name)
    lighting = sample_lighting(rng, gray_share)
    out = relight(load_image(src), lighting, rng)
    if out.ndim == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, lighting.jpeg_quality])
    if not ok:
        raise OSError(f"{dst}: could not encode JPEG")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(encoded.tobytes())
    return lighting


def pair_images(pairs_file: Path, images_dir: Path) -> list[str]:
    """Paths under ``images_dir`` of every image an LFW-format pair list uses."""
    from mobileface.data.pairs import read_pairs

    names: set[str] = set()
    for pair in read_pairs(pairs_file, images_dir):
        for path in (pair.image_a, pair.image_b):
            names.add(path.relative_to(images_dir).as_posix())
    return sorted(names)


def relight_folder(
    src: Path,
    out: Path,
    names: Iterable[str] | None = None,
    seed: int = DEFAULT_SEED,
    gray_share: float = GRAY_SHARE,
) -> dict:
    """Relight ``names`` (relative paths; default every image under ``src``) into ``out``.

    Files already in ``out`` with a matching manifest entry are kept (resumable). Writes
    ``out/relight.json``: the seed, and each image's lighting. Returns that manifest.
    """
    from mobileface.image import IMAGE_EXTENSIONS

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder of photos")
    if names is None:
        names = sorted(
            str(p.relative_to(src)) for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
        )
    manifest_path = out / "relight.json"
    manifest = {"seed": seed, "gray_share": gray_share, "source": str(src), "images": {}}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("seed") == seed and old.get("gray_share") == gray_share:
            manifest["images"] = old.get("images", {})
    for name in names:
        target = (out / name).with_suffix(".jpg")
        if name in manifest["images"] and target.is_file():
            continue
        lighting = relight_file(src / name, target, name, seed, gray_share)
        manifest["images"][name] = asdict(lighting)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobileface.evaluation.relight",
        description=(
            "Relight photos (directional shading, gamma 0.2..3, sensor noise, mostly "
            "grayscale, JPEG) into OUT, same relative paths, seeded per image. LFW: evaluation "
            "only, never training."
        ),
    )
    parser.add_argument("src", type=Path, help="folder of photos (e.g. ../shared/data/lfw/images)")
    parser.add_argument("out", type=Path, help="output folder (outside the repository)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default %(default)s")
    parser.add_argument(
        "--pairs", type=Path, action="append", help="relight only the images of this pair list"
    )
    parser.add_argument("--gray-share", type=float, default=GRAY_SHARE, help="default %(default)s")
    args = parser.parse_args(argv)
    names = None
    if args.pairs:
        names = sorted({n for p in args.pairs for n in pair_images(p, args.src)})
    try:
        manifest = relight_folder(args.src, args.out, names, args.seed, args.gray_share)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(manifest['images'])} photos relit in {args.out} (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
