"""Gallery backends: one interface, two stores, chosen by ``--db``.

- a path: :class:`~.store.GalleryStore`, a SQLite file (the embedded default), searched by an
  in-process index (:class:`~.index.ModelIndex`: exact, or HNSW with FAISS);
- ``postgresql://user[:password]@host:port/db`` (or ``postgres://``):
  :class:`~.postgres.PostgresStore`, searched in the database with pgvector, so any number of
  service processes share one gallery.

Any other URL scheme is refused. :func:`open_store` is the one place that decides.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mobileface.errors import MobileFaceError

from .index import HNSWParams, IndexKind
from .store import (
    GalleryDump,
    GalleryStore,
    ModelKey,
    ModelSummary,
    NewFace,
    Person,
    is_postgres_url,
)


class DatabaseUnavailableError(MobileFaceError):
    """The gallery's database server cannot be reached now (down, restarting, overloaded);
    the service answers 503 and recovers by itself once it is back."""


class GalleryBackend(Protocol):
    """What the gallery, the CLI and the service need of a store."""

    location: str  # for messages; never holds a password

    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def gallery_id(self) -> str: ...
    def integrity_check(self) -> str: ...
    def enroll(
        self,
        name: str,
        faces: Sequence[NewFace],
        model: ModelKey,
        *,
        person_id: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Person, list[int], tuple[int, int]]: ...
    def remove_person(self, person_id: int) -> None: ...
    def remove_model(self, model: ModelKey) -> int: ...
    def person(self, person_id: int) -> Person: ...
    def find_person(self, ref: str | int) -> Person: ...
    def persons(
        self, *, name: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[Person]: ...
    def person_names(self) -> list[tuple[int, str]]: ...
    def count_persons(self, name: str | None = None) -> int: ...
    def count_faces(self, model: ModelKey | None = None) -> int: ...
    def names(self, person_ids: Sequence[int]) -> dict[int, str]: ...
    def models(self) -> list[ModelSummary]: ...
    def model_keys(self) -> list[ModelKey]: ...
    def revision(self, model: ModelKey) -> int: ...
    def face_owners(self, model: ModelKey) -> tuple[np.ndarray, np.ndarray, int]: ...
    def embeddings(
        self, model: ModelKey, face_ids: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def iter_faces(self, model: ModelKey) -> Iterator[tuple[int, int, str]]: ...
    def has_face(self, person_id: int, image_sha256: str, model: ModelKey) -> bool: ...
    def photo(self, person_id: int, image_sha256: str) -> bytes | None: ...
    def count_photos(self) -> int: ...
    def next_ids(self) -> dict[str, int]: ...
    def dump(self, chunk: int = 5000) -> GalleryDump: ...
    def load(self, dump: GalleryDump) -> None: ...


def model_search(
    store: GalleryBackend,
    model: ModelKey,
    *,
    kind: IndexKind = "auto",
    hnsw: HNSWParams | None = None,
    **index_options: Any,
) -> Any:
    """The search of ``model``'s faces in ``store``: run in the database where the store can
    (PostgreSQL: :class:`~.postgres.DatabaseIndex`), else an in-process
    :class:`~.index.ModelIndex` (``index_options`` go to it)."""
    in_database = getattr(store, "search_index", None)
    if in_database is not None:
        return in_database(model, kind=kind, hnsw=hnsw)
    from .index import ModelIndex

    return ModelIndex(store, model, kind=kind, hnsw=hnsw, **index_options)  # type: ignore[arg-type]


def open_store(db: str | Path, *, create: bool = True) -> GalleryBackend:
    """The store ``db`` names: a SQLite file (created if missing, unless ``create=False``)
    or a PostgreSQL database (its schema created or migrated on open)."""
    if is_postgres_url(db):
        from .postgres import PostgresStore

        return PostgresStore(str(db), create=create)
    return GalleryStore(db, create=create)


__all__ = ["DatabaseUnavailableError", "GalleryBackend", "model_search", "open_store"]
