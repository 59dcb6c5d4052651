"""LFW-style pair lists: ``pairs.txt`` (View 2) and ``pairsDevTrain/Test.txt`` (View 1).

The first line is the header: ``FOLDS<TAB>N`` (View 2: ``10 300``, ten folds of N same pairs
followed by N different pairs) or a single ``N`` (View 1: one fold). Then one pair a line:

- same person: ``name<TAB>n1<TAB>n2``
- different people: ``name1<TAB>n1<TAB>name2<TAB>n2``

Image ``n`` of ``name`` is ``IMAGES/name/name_%04d.<ext>``, whatever the extension (the
original JPEGs, PNG crops from ``mobileface align``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataFormatError


@dataclass(frozen=True)
class Pair:
    """Two images, whether they show the same person, and the fold the pair belongs to."""

    image_a: Path
    image_b: Path
    same: bool
    fold: int


def read_pairs(
    pairs_file: str | Path,
    images_dir: str | Path,
    *,
    missing: str = "error",
) -> list[Pair]:
    """Parse ``pairs_file`` and find each image under ``images_dir`` by name and stem.

    ``missing="error"`` (default) raises :class:`DataFormatError` listing the images not found;
    ``missing="keep"`` returns such pairs with the extension-less path (which does not exist),
    so an evaluation can count them as failures instead of dropping them.
    """
    if missing not in ("error", "keep"):
        raise ValueError(f"missing must be 'error' or 'keep', got {missing!r}")
    pairs_file, images_dir = Path(pairs_file), Path(images_dir)
    try:
        lines = pairs_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataFormatError(f"{pairs_file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{pairs_file}: unreadable pair list: {exc}") from None
    if not images_dir.is_dir():
        raise DataFormatError(f"{images_dir}: image directory not found")

    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataFormatError(f"{pairs_file}: empty pair list")
    header_line, header = numbered[0]
    folds, per_class = _parse_header(header, f"{pairs_file}:{header_line}")
    body = numbered[1:]
    expected = folds * 2 * per_class
    if len(body) != expected:
        raise DataFormatError(
            f"{pairs_file}: header says {folds} fold(s) x {per_class} same + {per_class} "
            f"different = {expected} pairs, found {len(body)} pair lines"
        )

    finder = _ImageFinder(images_dir)
    pairs: list[Pair] = []
    absent: list[str] = []
    for index, (number, line) in enumerate(body):
        where = f"{pairs_file}:{number}"
        name_a, num_a, name_b, num_b = _parse_pair_line(line, where)
        paths = []
        for name, num in ((name_a, num_a), (name_b, num_b)):
            path = finder.find(name, num)
            if path is None:
                stem = f"{name}_{num:04d}"
                absent.append(f"{where}: {name}/{stem}.*")
                path = images_dir / name / stem
            paths.append(path)
        pairs.append(Pair(paths[0], paths[1], name_a == name_b, index // (2 * per_class)))
    if absent and missing == "error":
        shown = "\n  ".join(absent[:10])
        more = f"\n  ... and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise DataFormatError(
            f"{len(absent)} image(s) of {pairs_file} not found under {images_dir}:\n  {shown}{more}"
        )
    return pairs


def _parse_header(text: str, where: str) -> tuple[int, int]:
    fields = text.split()
    try:
        values = [int(v) for v in fields]
    except ValueError:
        values = []
    if len(values) == 1 and values[0] > 0:
        return 1, values[0]
    if len(values) == 2 and values[0] > 0 and values[1] > 0:
        return values[0], values[1]
    raise DataFormatError(
        f"{where}: expected a header 'FOLDS<TAB>PAIRS' (View 2, e.g. '10 300') or 'PAIRS' "
        f"(View 1), got {text.strip()[:60]!r}"
    )


def _parse_pair_line(line: str, where: str) -> tuple[str, int, str, int]:
    fields = line.split()
    try:
        if len(fields) == 3:
            return fields[0], _number(fields[1]), fields[0], _number(fields[2])
        if len(fields) == 4:
            return fields[0], _number(fields[1]), fields[2], _number(fields[3])
    except ValueError:
        pass
    raise DataFormatError(
        f"{where}: expected 'name n1 n2' (same person) or 'name1 n1 name2 n2' (different "
        f"people) with positive image numbers, got {line.strip()[:80]!r}"
    )


def _number(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


class _ImageFinder:
    """Finds ``name/name_NNNN.*`` by stem, listing each person's folder once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[str, dict[str, Path]] = {}

    def find(self, name: str, number: int) -> Path | None:
        folder = self._folders.get(name)
        if folder is None:
            folder = {}
            directory = self.root / name
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    if path.is_file() and not path.name.startswith("."):
                        folder.setdefault(path.stem, path)
            self._folders[name] = folder
        return folder.get(f"{name}_{number:04d}")
