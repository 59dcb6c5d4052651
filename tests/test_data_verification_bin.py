"""Verification .bin sets: round trip, the forms found in the wild, and hostile pickles."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobileface.data.verification_bin import read_bin, write_bin
from mobileface.errors import DataFormatError
from mobileface.image import load_image


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_round_trip(tmp_path: Path) -> None:
    images = [_jpeg(i) for i in range(6)]
    write_bin(tmp_path / "lfw.bin", images, [True, False, True])
    got, same = read_bin(tmp_path / "lfw.bin")
    assert got == images and same.dtype == bool and same.tolist() == [True, False, True]
    assert load_image(got[0]).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="two per pair"):
        write_bin(tmp_path / "x.bin", images[:5], [True, False, True])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_insightface_style_pickles_of_every_protocol(tmp_path: Path, protocol: int) -> None:
    images = [_jpeg(i) for i in range(4)]
    path = tmp_path / f"p{protocol}.bin"
    path.write_bytes(pickle.dumps((images, [True, False]), protocol=protocol))
    got, same = read_bin(path)
    assert got == images and same.tolist() == [True, False]


def test_numpy_arrays_are_allowed(tmp_path: Path) -> None:
    images = [np.frombuffer(_jpeg(i), dtype=np.uint8) for i in range(2)]
    path = tmp_path / "np.bin"
    path.write_bytes(pickle.dumps((images, np.array([True])), protocol=2))
    got, same = read_bin(path)
    assert got[0] == images[0].tobytes() and same.tolist() == [True]


def test_python2_str_images_are_read_as_bytes(tmp_path: Path) -> None:
    # What Python 2's pickle.dump((bins, issame), f, protocol=2) writes: bins as SHORT/BINSTRING
    payload = b"\xff\xd8fake-jpeg-bytes"
    body = (
        b"\x80\x02(]q\x00(U"
        + bytes([len(payload)])
        + payload
        + b"U"
        + bytes([len(payload)])
        + payload
        + b"e]q\x01\x88at."
    )
    # (MARK, list of two short strings, list [True], TUPLE via 't')
    path = tmp_path / "py2.bin"
    path.write_bytes(body)
    got, same = read_bin(path)
    assert got == [payload, payload] and same.tolist() == [True]


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_hostile_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(marker), b"x"], [True])))
    with pytest.raises(DataFormatError, match=r"evil\.bin: refused to load (posix|os|nt)\.system"):
        read_bin(path)
    assert not marker.exists()

    for module, name in (("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load")):
        crafted = f"c{module}\n{name}\n(S'1'\ntR.".encode()
        path.write_bytes(crafted)
        with pytest.raises(DataFormatError, match=f"refused to load {module}.{name}"):
            read_bin(path)


def test_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    crafted = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    path = tmp_path / "codec.bin"
    path.write_bytes(crafted)
    with pytest.raises(DataFormatError, match="unreadable pickle"):
        read_bin(path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"a": 1}, "expected a pair"),
        (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
        (([1, 2], [True]), "image 0 is int"),
        (([b"a", b"b"], ["yes"]), "list of bools"),
        (([b"a", b"b"], [3]), "0/1"),
    ],
)
def test_wrong_structure(tmp_path: Path, obj, message: str) -> None:
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(DataFormatError, match=message):
        read_bin(path)


def test_truncated_empty_and_missing(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    write_bin(good, [_jpeg(0), _jpeg(1)], [False])
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good.read_bytes()[:50])
    with pytest.raises(DataFormatError, match=r"cut\.bin: not a verification \.bin"):
        read_bin(cut)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty file"):
        read_bin(empty)
    with pytest.raises(DataFormatError, match="no such file"):
        read_bin(tmp_path / "none.bin")
