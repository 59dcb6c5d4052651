"""Image folders (folder = identity) and file lists with a labels TSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobileface.data.folders import label_index, list_image_folder, read_labels_tsv
from mobileface.errors import DataFormatError


def _touch(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_image_folder_listing(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        [
            "bob/1.jpg",
            "ann/b.PNG",
            "ann/a.jpg",
            "ann/sub/c.jpeg",
            "ann/notes.txt",
            "ann/.hidden.jpg",
            ".trash/x.jpg",
            "loose.jpg",
        ],
    )
    items = list_image_folder(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), n) for p, n in items] == [
        ("ann/a.jpg", "ann"),
        ("ann/b.PNG", "ann"),
        ("ann/sub/c.jpeg", "ann"),
        ("bob/1.jpg", "bob"),
    ]
    assert label_index(n for _, n in items) == {"ann": 0, "bob": 1}


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no images"):
        list_image_folder(tmp_path)
    with pytest.raises(DataFormatError, match="not a directory"):
        list_image_folder(tmp_path / "none")


def test_real_identity_folders(data_dir: Path) -> None:
    root = data_dir / "pins-112"
    if not root.is_dir():
        pytest.skip("pins-112 missing")
    items = list_image_folder(root)
    names = {n for _, n in items}
    assert len(items) > 1000 and 30 <= len(names) <= 60
    assert all(p.parent.name == n for p, n in items)


def test_labels_tsv(tmp_path: Path) -> None:
    _touch(tmp_path, ["images/000001.jpg", "images/000002.jpg"])
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("# comment\n000001.jpg\t2880\n\n000002.jpg\t17\n")
    rows = read_labels_tsv(tsv)
    assert rows == [
        (tmp_path / "images" / "000001.jpg", "2880"),
        (tmp_path / "images" / "000002.jpg", "17"),
    ]
    header = tmp_path / "with_header.tsv"
    header.write_text("path\tlabel\nimages/000001.jpg\ta\n")
    assert read_labels_tsv(header) == [(tmp_path / "images" / "000001.jpg", "a")]
    assert read_labels_tsv(tsv, images_dir="/data")[0][0] == Path("/data/000001.jpg")


def test_real_labels_tsv(data_dir: Path) -> None:
    tsv = data_dir / "celeba-align-89x109" / "labels.tsv"
    if not tsv.is_file():
        pytest.skip("celeba-align-89x109 missing")
    rows = read_labels_tsv(tsv)
    assert len(rows) > 5000
    assert rows[0][0].is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg\n", r"bad\.tsv:1: expected 'file<TAB>label'"),
        ("a.jpg\t1\nb.jpg 2\n", r"bad\.tsv:2"),
        ("a.jpg\t1\t3\n", r"bad\.tsv:1"),
        ("a.jpg\t\n", r"bad\.tsv:1"),
        ("\n# only comments\n", "no entries"),
    ],
)
def test_malformed_labels_tsv(tmp_path: Path, text: str, message: str) -> None:
    tsv = tmp_path / "bad.tsv"
    tsv.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_labels_tsv(tsv)
    with pytest.raises(DataFormatError, match="no such file"):
        read_labels_tsv(tmp_path / "none.tsv")
