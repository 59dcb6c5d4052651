"""LFW-style pair lists: the real protocol files, both line forms, folds, and malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobileface.data.pairs import Pair, read_pairs
from mobileface.errors import DataFormatError


@pytest.fixture(scope="module")
def lfw(data_dir: Path) -> Path:
    root = data_dir / "lfw"
    if not (root / "pairs.txt").is_file():
        pytest.skip(f"{root}/pairs.txt missing")
    return root


def test_view2_pairs_txt(lfw: Path) -> None:
    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    assert len(pairs) == 6000
    assert sorted({p.fold for p in pairs}) == list(range(10))
    for fold in range(10):
        in_fold = [p for p in pairs if p.fold == fold]
        assert len(in_fold) == 600
        assert sum(p.same for p in in_fold) == 300
    first = pairs[0]
    assert first == Pair(
        lfw / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg",
        lfw / "images" / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg",
        True,
        0,
    )
    assert not pairs[300].same and pairs[300].image_a.parent.name != pairs[300].image_b.parent.name
    assert all(p.image_a.is_file() and p.image_b.is_file() for p in pairs)


def test_view1_dev_files(lfw: Path) -> None:
    train = read_pairs(lfw / "pairsDevTrain.txt", lfw / "images")
    test = read_pairs(lfw / "pairsDevTest.txt", lfw / "images")
    assert len(train) == 2200 and len(test) == 1000
    assert {p.fold for p in test} == {0}
    assert sum(p.same for p in test) == 500


def _tree(root: Path, files: list[str]) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def test_images_are_found_by_stem_whatever_the_extension(tmp_path: Path) -> None:
    images = _tree(tmp_path / "img", ["Ann/Ann_0001.png", "Ann/Ann_0002.jpeg", "Bob/Bob_0001.png"])
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\n")
    pairs = read_pairs(pairs_file, images)
    assert [p.image_b.name for p in pairs] == ["Ann_0002.jpeg", "Bob_0001.png"]
    assert [p.same for p in pairs] == [True, False]


def test_missing_images_are_listed_or_kept(tmp_path: Path) -> None:
    images = _tree(tmp_path / "img", ["Ann/Ann_0001.png"])
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\nAnn\t1\t2\nAnn\t1\tBob\t3\n")
    with pytest.raises(DataFormatError, match=r"(?s)2 image\(s\).*pairs\.txt:2: Ann/Ann_0002\.\*"):
        read_pairs(pairs_file, images)
    kept = read_pairs(pairs_file, images, missing="keep")
    assert len(kept) == 2 and not kept[1].image_b.exists()
    assert kept[1].image_b == images / "Bob" / "Bob_0003"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty pair list"),
        ("ten\tthree\n", r"pairs\.txt:1: expected a header"),
        ("1\t1\nAnn\t1\t2\n", r"1 fold\(s\) x 1 same \+ 1 different = 2 pairs, found 1"),
        ("1\nAnn\t1\t2\nAnn\tone\tBob\t1\n", r"pairs\.txt:3: expected 'name n1 n2'"),
        ("1\nAnn\t1\t2\nAnn\t1\tBob\n", r"pairs\.txt:3: expected"),
        ("1\nAnn\t1\t2\nAnn\t1\tBob\t1\textra\n", r"pairs\.txt:3"),
        ("1\nAnn\t0\t2\nAnn\t1\tBob\t1\n", r"pairs\.txt:2: .*positive image numbers"),
    ],
)
def test_malformed_pair_files(tmp_path: Path, text: str, message: str) -> None:
    images = _tree(tmp_path / "img", ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"])
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_pairs(pairs_file, images)


def test_missing_files_and_folders(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file"):
        read_pairs(tmp_path / "none.txt", tmp_path)
    (tmp_path / "p.txt").write_text("1\n")
    with pytest.raises(DataFormatError, match="image directory not found"):
        read_pairs(tmp_path / "p.txt", tmp_path / "nowhere")
