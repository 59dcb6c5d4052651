"""load_image: every kind of input a user hands us becomes H x W x 3 uint8 RGB, or a clear error."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobileface.errors import ImageError
from mobileface.image import load_image, save_image


@pytest.fixture(scope="module")
def lfw_jpeg(data_dir: Path) -> Path:
    path = data_dir / "lfw" / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
    if not path.is_file():
        pytest.skip(f"{path} missing from the shared data")
    return path


def _gradient(h: int = 40, w: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 6 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def test_real_jpeg_decodes_to_rgb_matching_opencv(lfw_jpeg: Path) -> None:
    import cv2

    image = load_image(lfw_jpeg)
    assert image.shape == (250, 250, 3) and image.dtype == np.uint8
    reference = cv2.cvtColor(cv2.imread(str(lfw_jpeg)), cv2.COLOR_BGR2RGB)
    assert np.abs(image.astype(int) - reference.astype(int)).mean() < 2.0  # decoder rounding


def test_fast_jpeg_path_gives_pillows_pixels(lfw_jpeg: Path, tmp_path: Path) -> None:
    """Plain JPEGs are decoded by OpenCV for speed; the pixels must be Pillow's, and a JPEG
    with trailing padding (still complete) must decode the same."""
    pillow = np.asarray(Image.open(lfw_jpeg).convert("RGB"))
    assert np.array_equal(load_image(lfw_jpeg), pillow)
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(lfw_jpeg.read_bytes() + b"\0\0\n")
    assert np.array_equal(load_image(padded), pillow)


def test_bytes_and_path_give_the_same_pixels(lfw_jpeg: Path) -> None:
    assert np.array_equal(load_image(lfw_jpeg), load_image(lfw_jpeg.read_bytes()))


def test_truncated_jpeg_is_reported_with_the_file_name(lfw_jpeg: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(lfw_jpeg.read_bytes()[:3000])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated"):
        load_image(cut)


def test_header_only_jpeg_is_an_error(lfw_jpeg: Path, tmp_path: Path) -> None:
    stub = tmp_path / "stub.jpg"
    stub.write_bytes(lfw_jpeg.read_bytes()[:12])
    with pytest.raises(ImageError, match=r"stub\.jpg"):
        load_image(stub)


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: empty file \(0 bytes\)"):
        load_image(empty)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_non_image_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        load_image(text)


def test_corrupt_jpeg_body(lfw_jpeg: Path, tmp_path: Path) -> None:
    data = bytearray(lfw_jpeg.read_bytes())
    # Keep the header, replace the entropy-coded data with an invalid marker soup.
    start = data.index(b"\xff\xda")  # start of scan
    data[start + 20 :] = b"\xff\xd9" + b"\x00" * 10
    bad = tmp_path / "garbled.jpg"
    bad.write_bytes(bytes(data))
    try:
        image = load_image(bad)
    except ImageError as exc:
        assert "garbled.jpg" in str(exc)
    else:  # some decoders fill a cut scan with grey: that is a valid (if useless) image
        assert image.shape == (250, 250, 3)


def test_png_with_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    image = load_image(buf.getvalue(), name="alpha.png")
    assert image.shape == (10, 10, 3)
    assert tuple(image[0, 0]) == (200, 0, 0)
    assert tuple(image[9, 9]) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    rgb = _gradient()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = load_image(path)
    assert image.shape == rgb.shape
    assert np.abs(image.astype(int) - rgb.astype(int)).mean() < 8


def test_16_bit_grayscale_png_is_scaled(tmp_path: Path) -> None:
    import cv2

    gray16 = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), gray16)
    image = load_image(path)
    assert image.shape == (8, 64, 3)
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255
    assert np.array_equal(image[..., 0], image[..., 2])
    assert np.abs(image[0, :, 0].astype(int) - np.rint(gray16[0] / 257).astype(int)).max() <= 1


def test_16_bit_colour_png_is_scaled(tmp_path: Path) -> None:
    import cv2

    rgb = _gradient()
    rgb16 = rgb.astype(np.uint16) * 257
    path = tmp_path / "deep_rgb.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    image = load_image(path)
    assert np.abs(image.astype(int) - rgb.astype(int)).max() <= 1


def test_grayscale_becomes_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "gray.jpg"
    Image.fromarray(_gradient()[..., 0]).save(path)
    image = load_image(path)
    assert image.shape == (40, 60, 3)
    assert np.array_equal(image[..., 0], image[..., 1])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)  # left half red, right half blue
    rgb[:, 20:] = (0, 0, 255)
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.shape == (40, 20, 3)  # displayed upright: portrait
    assert image[5, 10, 0] > 200 and image[5, 10, 2] < 60  # red now on top
    assert image[35, 10, 2] > 200


def test_palette_gif_and_bmp(tmp_path: Path) -> None:
    rgb = _gradient()
    Image.fromarray(rgb).convert("P").save(tmp_path / "a.gif")
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    assert load_image(tmp_path / "a.gif").shape == rgb.shape
    assert np.array_equal(load_image(tmp_path / "a.bmp"), rgb)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(100_000, 100_000))  # 10 gigapixels in ~1 KB
    assert bomb.stat().st_size < 2000
    with pytest.raises(ImageError, match=r"bomb\.png: .*exceeds the limit .*decompression bomb"):
        load_image(bomb)
    moderate = tmp_path / "moderate.png"
    moderate.write_bytes(_png_claiming(9000, 9000))  # 81 MP: below Pillow's limit, above ours
    with pytest.raises(ImageError, match=r"moderate\.png: 9000x9000 = 81,000,000 pixels exceeds"):
        load_image(moderate)


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_gradient(100, 100)).save(path)
    assert load_image(path, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageError, match="exceeds the limit of 9,999"):
        load_image(path, max_pixels=9_999)


def test_save_image_round_trips_png_and_leaves_no_temp_file(tmp_path: Path) -> None:
    rgb = _gradient()
    out = tmp_path / "sub" / "crop.png"
    save_image(out, rgb)
    assert np.array_equal(load_image(out), rgb)
    assert sorted(p.name for p in out.parent.iterdir()) == ["crop.png"]
    save_image(tmp_path / "crop.jpg", rgb)
    assert np.abs(load_image(tmp_path / "crop.jpg").astype(int) - rgb.astype(int)).mean() < 4
