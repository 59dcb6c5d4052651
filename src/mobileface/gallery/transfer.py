"""Moving a gallery between backends (SQLite -> PostgreSQL and back), losing nothing.

:func:`copy_gallery` reads every person, face (with its embedding and model), and kept photo
of one store and writes them into another, empty one in a single transaction, keeping their
ids (and the id counters, so the ids of deleted persons are not handed out again). It then
checks the counts on both sides (persons, photos, faces of each model) and the ids' high-water
marks, and raises if anything differs. ``mobileface persons copy`` runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from mobileface.errors import DataFormatError

from .backend import GalleryBackend

T = TypeVar("T")


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    persons: int
    faces: dict[str, int]  # model (NAME@VERSION) -> faces
    photos: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "persons": self.persons,
            "faces": self.faces,
            "photos": self.photos,
            "seconds": round(self.seconds, 2),
            "checked": True,
        }


def counts(store: GalleryBackend) -> dict[str, Any]:
    """What a copy must preserve, counted: persons, photos, faces per model, id counters."""
    return {
        "persons": store.count_persons(),
        "photos": store.count_photos(),
        "faces": {str(m.model): m.faces for m in store.models()},
        "next_ids": {k: v for k, v in store.next_ids().items() if v},
    }


def copy_gallery(
    source: GalleryBackend,
    target: GalleryBackend,
    progress: Callable[[str, int], None] | None = None,
    chunk: int = 5000,
) -> CopyReport:
    """Copy everything in ``source`` into ``target`` (which must hold no persons), then check
    that the counts agree. ``progress(table, rows_so_far)`` is called after each chunk."""
    if source.location == target.location:
        raise DataFormatError(f"{source.location}: source and target are the same gallery")
    if target.count_persons():
        raise DataFormatError(
            f"{target.location} already holds {target.count_persons()} persons: copy into a "
            "new or empty gallery"
        )
    started = time.perf_counter()
    before = counts(source)
    dump = source.dump(chunk)
    if progress is not None:
        dump.persons = _counted(dump.persons, "persons", progress)
        dump.faces = _counted(dump.faces, "faces", progress)
        dump.photos = _counted(dump.photos, "photos", progress)
    target.load(dump)
    after_source, after_target = counts(source), counts(target)
    if after_source != before:
        raise DataFormatError(
            f"{source.location} changed during the copy ({before} -> {after_source}): copy "
            "again into an empty gallery when nothing writes to it"
        )
    if after_target != before:
        raise DataFormatError(
            f"copy check failed: {source.location} holds {before}, {target.location} {after_target}"
        )
    return CopyReport(
        source=source.location,
        target=target.location,
        persons=before["persons"],
        faces=before["faces"],
        photos=before["photos"],
        seconds=time.perf_counter() - started,
    )


def _counted(
    chunks: Iterable[list[T]], table: str, progress: Callable[[str, int], None]
) -> Iterator[list[T]]:
    done = 0
    for rows in chunks:
        yield rows
        done += len(rows)
        progress(table, done)
