"""Image folders (one folder per identity) and file lists with a labels TSV."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import DataFormatError
from ..image import IMAGE_EXTENSIONS

_HEADER_WORDS = {"path", "file", "filename", "image", "img"}


def list_image_folder(root: str | Path) -> list[tuple[Path, str]]:
    """``(image path, identity name)`` for every image in ``root/<identity>/...``, sorted.

    The identity is the name of the folder directly under ``root``; images deeper down count
    for that identity. Hidden files and folders, and files without an image extension, are
    left out.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: not a directory")
    items: list[tuple[Path, str]] = []
    for identity in sorted(p for p in root.iterdir() if p.is_dir()):
        if identity.name.startswith("."):
            continue
        for path in sorted(identity.rglob("*")):
            rel = path.relative_to(identity)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                items.append((path, identity.name))
    if not items:
        raise DataFormatError(f"{root}: no images in identity folders (expected root/NAME/*.jpg)")
    return items


def label_index(labels: Iterable[str]) -> dict[str, int]:
    """Map each distinct label to ``0..N-1`` in sorted order (a stable class index)."""
    return {name: i for i, name in enumerate(sorted(set(labels)))}


def read_labels_tsv(
    path: str | Path, images_dir: str | Path | None = None
) -> list[tuple[Path, str]]:
    """Read ``file<TAB>label`` lines: ``(image path, label)`` in file order.

    Paths are taken relative to ``images_dir`` (default: the TSV's folder, or its ``images``
    subfolder when the first listed file is there). Blank lines and lines starting with ``#``
    are skipped, and so is a header line (first field ``path``, ``file``, ``filename`` or
    ``image``). Malformed lines raise :class:`DataFormatError` with ``file:line``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: unreadable labels file: {exc}") from None
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise DataFormatError(
                f"{path}:{number}: expected 'file<TAB>label', got {line.strip()[:80]!r}"
            )
        if not rows and fields[0].strip().lower() in _HEADER_WORDS:
            continue
        rows.append((fields[0].strip(), fields[1].strip()))
    if not rows:
        raise DataFormatError(f"{path}: no entries")
    if images_dir is None:
        images_dir = path.parent
        nested = path.parent / "images"
        if not (images_dir / rows[0][0]).exists() and (nested / rows[0][0]).exists():
            images_dir = nested
    base = Path(images_dir)
    return [(base / name, label) for name, label in rows]
