"""The gallery store: persons and their face embeddings in one SQLite file.

SQLite runs in WAL mode with ``synchronous=FULL``: once :meth:`GalleryStore.enroll` returns,
the enrolment survives a killed process (and a power cut). Every enrolment is one transaction,
so a crash leaves either all of it or none of it.

The schema is versioned with ``PRAGMA user_version`` and brought up to date on open by the
ordered :data:`MIGRATIONS`, each applied in its own transaction; a file written by a newer
mobileface is refused rather than guessed at.

Embeddings are stored L2-normalised as little-endian float32, tagged with the model that made
them (:class:`ModelKey`: name and version). Embeddings of different models never mix: every
read that feeds a search names its model. Triggers keep a per-model revision counter that any
change to that model's faces bumps, so search indexes (here or in another process) can tell
cheaply that they are stale.

This is the embedded default backend; :mod:`.postgres` is the server one, behind the same
interface (:class:`~.backend.GalleryBackend`); :func:`~.backend.open_store` picks one from
``--db``. Both read and write the backend-neutral rows here (:class:`GalleryDump`), which is
how a gallery is copied from one to the other.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mobileface.errors import DataFormatError, MobileFaceError

EMBEDDING_DTYPE = np.dtype("<f4")


class UnknownPersonError(MobileFaceError, LookupError):
    """No person with the given id is in the gallery."""


class ModelMismatchError(MobileFaceError):
    """The gallery holds no embeddings of the model in use (they are of another model)."""


@dataclass(frozen=True, order=True)
class ModelKey:
    """Which model made an embedding: its name and a version (a digest of its weights)."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        name, sep, version = text.rpartition("@")
        if not sep or not name or not version:
            raise DataFormatError(f"{text!r}: a model is written NAME@VERSION")
        return cls(name, version)


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face (the embedding itself is read only by searches)."""

    id: int
    person_id: int
    model: ModelKey
    image_sha256: str
    box: tuple[float, float, float, float] | None
    det_score: float | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model.name,
            "model_version": self.model.version,
            "image_sha256": self.image_sha256,
            "box": list(self.box) if self.box is not None else None,
            "det_score": self.det_score,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    metadata: dict[str, Any]
    created_at: str
    faces: tuple[FaceRecord, ...] = ()
    photos: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "faces": [f.to_dict() for f in self.faces],
            "photos": self.photos,
        }


@dataclass(frozen=True)
class NewFace:
    """A face to insert: its L2-normalised embedding and where it came from."""

    embedding: np.ndarray
    image_sha256: str
    box: Sequence[float] | None = None
    det_score: float | None = None
    photo: bytes | None = None  # the source file, kept only when asked


@dataclass(frozen=True)
class ModelSummary:
    model: ModelKey
    dim: int
    faces: int
    persons: int
    revision: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "model_version": self.model.version,
            "dim": self.dim,
            "faces": self.faces,
            "persons": self.persons,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...] = field(repr=False)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "persons, faces tagged by model, per-model revision counters",
        (
            """CREATE TABLE meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            """CREATE TABLE persons (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL CHECK (length(trim(name)) > 0),
                metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX persons_name ON persons (name)",
            """CREATE TABLE faces (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                person_id INTEGER NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                dim INTEGER NOT NULL CHECK (dim > 0),
                embedding BLOB NOT NULL CHECK (length(embedding) = 4 * dim),
                image_sha256 TEXT NOT NULL,
                box TEXT CHECK (box IS NULL OR json_valid(box)),
                det_score REAL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX faces_person ON faces (person_id)",
            "CREATE INDEX faces_model ON faces (model_name, model_version, id)",
            """CREATE TABLE model_revisions (
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                revision INTEGER NOT NULL,
                PRIMARY KEY (model_name, model_version)
            )""",
            """CREATE TRIGGER faces_insert_revision AFTER INSERT ON faces BEGIN
                INSERT INTO model_revisions (model_name, model_version, revision)
                VALUES (NEW.model_name, NEW.model_version, 1)
                ON CONFLICT (model_name, model_version) DO UPDATE SET revision = revision + 1;
            END""",
            """CREATE TRIGGER faces_delete_revision AFTER DELETE ON faces BEGIN
                INSERT INTO model_revisions (model_name, model_version, revision)
                VALUES (OLD.model_name, OLD.model_version, 1)
                ON CONFLICT (model_name, model_version) DO UPDATE SET revision = revision + 1;
            END""",
        ),
    ),
    Migration(
        2,
        "photos: source images, kept only on request (re-embedding for a new model uses them)",
        (
            """CREATE TABLE photos (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                person_id INTEGER NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
                sha256 TEXT NOT NULL,
                data BLOB NOT NULL,
                created_at TEXT NOT NULL,
                UNIQUE (person_id, sha256)
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_embedding(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).tobytes()


def decode_embeddings(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stack float32 blobs into an (N, dim) array."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=EMBEDDING_DTYPE).reshape(len(blobs), dim).copy()


_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")
DB_HELP = "a SQLite file path, or postgresql://user[:password]@host:port/db"


def redact_url(text: str) -> str:
    """``text`` with any password in a ``scheme://user:password@host`` URL (or a
    ``password=`` parameter) masked."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", text)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", text)


def url_scheme(db: str | Path) -> str | None:
    """The scheme of a ``--db`` value that is a URL (lower case), ``None`` for a path."""
    match = _URL.match(str(db))
    return match["scheme"].lower() if match else None


def is_postgres_url(db: str | Path) -> bool:
    return url_scheme(db) in POSTGRES_SCHEMES


def refuse_urls(path: str | Path) -> None:
    """A ``--db`` value that is a URL of a scheme no backend serves is refused clearly,
    instead of creating folders named ``mysql:`` (the password, if any, is never echoed)."""
    scheme = url_scheme(path)
    if scheme is not None and scheme not in POSTGRES_SCHEMES:
        raise DataFormatError(
            f"{redact_url(str(path))}: {scheme}:// is not a gallery backend (--db takes {DB_HELP})"
        )


# -- backend-neutral rows: what moves between backends ------------------------------------


@dataclass(frozen=True)
class PersonRow:
    id: int
    name: str
    metadata: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class FaceRow:
    id: int
    person_id: int
    model: ModelKey
    embedding: np.ndarray
    image_sha256: str
    box: list[float] | None
    det_score: float | None
    created_at: str


@dataclass(frozen=True)
class PhotoRow:
    id: int
    person_id: int
    sha256: str
    data: bytes
    created_at: str


@dataclass
class GalleryDump:
    """A whole gallery as rows, read lazily in chunks (``dump`` of one store, ``load`` of
    another). ``next_ids`` holds, per table, the highest id ever handed out: ids of deleted
    rows are not given again, in the copy either."""

    models: list[tuple[ModelKey, int]]  # (model, embedding size)
    persons: Iterable[list[PersonRow]]
    faces: Iterable[list[FaceRow]]
    photos: Iterable[list[PhotoRow]]
    next_ids: dict[str, int]


class StoreBase:
    """What every backend shares: context management, finding a person by id or name, and
    turning rows into records.

    Each backend runs its own SQL (placeholders, how models are stored, and how JSON and
    vectors come back differ), but selects the same columns in the same order, so the
    mapping from rows to records is written once, here. A backend says how its JSON and
    vector columns decode (:meth:`_from_json`, :meth:`_to_vector`) and how to read one page
    of a table for :meth:`dump` (:attr:`_DUMP_SQL`, :meth:`_page`).
    """

    location: str  # where the gallery is, for messages (never with a password)
    # Per table, one page of rows after an id (parameters: last id, page size), in the
    # column order of PersonRow, FaceRow (model name and version in place of the model) and
    # PhotoRow.
    _DUMP_SQL: dict[str, str]

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def person(self, person_id: int) -> Person:
        raise NotImplementedError

    def persons(
        self, *, name: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[Person]:
        raise NotImplementedError

    def person_names(self) -> list[tuple[int, str]]:
        """(id, name) of every person, by id."""
        raise NotImplementedError

    # -- rows to records ---------------------------------------------------------------------

    def _from_json(self, value: Any) -> Any:
        """A JSON column's value (SQLite returns the text)."""
        return json.loads(value)

    def _to_vector(self, value: Any) -> np.ndarray:
        """An embedding column's value as a float32 vector."""
        raise NotImplementedError

    def _page(self, sql: str, last: int, chunk: int) -> list[tuple]:
        """The rows of ``sql`` (a :attr:`_DUMP_SQL` page) after id ``last``."""
        raise NotImplementedError

    def _face_records(self, rows: Iterable[tuple]) -> dict[int, tuple[FaceRecord, ...]]:
        """Faces by person id, from rows of (id, person id, model name, model version, image
        sha256, box, det score, created at)."""
        out: dict[int, list[FaceRecord]] = {}
        for fid, pid, mname, mver, sha, box, score, created in rows:
            box = self._from_json(box) if box else None
            out.setdefault(int(pid), []).append(
                FaceRecord(
                    id=int(fid),
                    person_id=int(pid),
                    model=ModelKey(mname, mver),
                    image_sha256=sha,
                    box=tuple(box) if box else None,
                    det_score=score,
                    created_at=created,
                )
            )
        return {k: tuple(v) for k, v in out.items()}

    def _person(
        self, row: tuple, faces: dict[int, tuple[FaceRecord, ...]], photos: dict[int, int]
    ) -> Person:
        """A person from a row of (id, name, metadata, created at), with their faces and
        photo count looked up by id."""
        pid, name, metadata, created = row
        return Person(
            id=int(pid),
            name=name,
            metadata=self._from_json(metadata),
            created_at=created,
            faces=faces.get(int(pid), ()),
            photos=int(photos.get(int(pid), 0)),
        )

    def next_ids(self) -> dict[str, int]:
        """Per table, the highest id handed out so far."""
        raise NotImplementedError

    def models(self) -> list[ModelSummary]:
        raise NotImplementedError

    def dump(self, chunk: int = 5000) -> GalleryDump:
        """The whole gallery as backend-neutral rows, read lazily ``chunk`` rows at a time."""
        return GalleryDump(
            models=[(m.model, m.dim) for m in self.models()],
            persons=self._pages(
                "persons", lambda r: PersonRow(r[0], r[1], self._from_json(r[2]), r[3]), chunk
            ),
            faces=self._pages(
                "faces",
                lambda r: FaceRow(
                    r[0],
                    r[1],
                    ModelKey(r[2], r[3]),
                    self._to_vector(r[4]),
                    r[5],
                    self._from_json(r[6]) if r[6] else None,
                    r[7],
                    r[8],
                ),
                chunk,
            ),
            photos=self._pages(
                "photos", lambda r: PhotoRow(r[0], r[1], r[2], bytes(r[3]), r[4]), chunk
            ),
            next_ids=self.next_ids(),
        )

    def _pages(self, table: str, convert: Any, chunk: int) -> Iterator[list]:
        last = 0
        while True:
            rows = self._page(self._DUMP_SQL[table], last, chunk)
            if not rows:
                return
            yield [convert(r) for r in rows]
            last = rows[-1][0]

    def find_person(self, ref: str | int) -> Person:
        """The person ``ref`` names: an id, else a name exactly one person has.

        A name several persons share is refused, listing their ids; an unknown one is refused
        with the persons whose name differs only in case or spacing, if any.
        """
        text = str(ref).strip()
        if isinstance(ref, int) or text.isdigit():
            try:
                return self.person(int(text))
            except UnknownPersonError:
                if isinstance(ref, int):
                    raise
        people = self.persons(name=text)
        if len(people) == 1:
            return people[0]
        if people:
            ids = ", ".join(str(p.id) for p in people)
            raise DataFormatError(
                f"{len(people)} persons are called {text!r} (ids {ids}): name one by its id"
            )
        folded = " ".join(text.replace("_", " ").split()).casefold()
        close = [
            f"{name!r} (id {pid})"
            for pid, name in self.person_names()
            if " ".join(name.replace("_", " ").split()).casefold() == folded
        ]
        hint = f"; did you mean {', '.join(close[:5])}?" if close else ""
        if text.isdigit():
            raise UnknownPersonError(f"no person with id {text}{hint}")
        raise UnknownPersonError(f"no person called {text!r}{hint}")


class GalleryStore(StoreBase):
    """A gallery file; safe to share between threads (calls are serialised by a lock).

    Several processes may open the same file: SQLite's locking keeps writes atomic, and
    readers see only committed enrolments.
    """

    _DUMP_SQL = {
        "persons": "SELECT id, name, metadata, created_at FROM persons WHERE id > ? "
        "ORDER BY id LIMIT ?",
        "faces": "SELECT id, person_id, model_name, model_version, embedding, image_sha256, "
        "box, det_score, created_at FROM faces WHERE id > ? ORDER BY id LIMIT ?",
        "photos": "SELECT id, person_id, sha256, data, created_at FROM photos WHERE id > ? "
        "ORDER BY id LIMIT ?",
    }

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = 30.0) -> None:
        refuse_urls(path)
        if is_postgres_url(path):
            raise DataFormatError(
                f"{redact_url(str(path))}: a PostgreSQL gallery, not a SQLite file: open it "
                "with mobileface.gallery.open_store"
            )
        self.path = Path(path)
        self.location = str(self.path)
        if not create and not self.path.is_file():
            raise DataFormatError(f"{self.path}: no such gallery")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            if mode.lower() != "wal":
                raise DataFormatError(f"{self.path}: could not switch to WAL mode ({mode})")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise DataFormatError(f"{self.path}: not a usable gallery database ({exc})") from exc
        except BaseException:
            self._close_quietly()
            raise

    # -- connection, transactions, schema -------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _close_quietly(self) -> None:
        with suppress(Exception):  # already failing: report the first error
            self._db.close()

    def __enter__(self) -> GalleryStore:
        return self

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, else rolled back."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @property
    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise DataFormatError(
                f"{self.path}: gallery schema version {current} is newer than this mobileface "
                f"understands ({SCHEMA_VERSION}); upgrade mobileface"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            with self.transaction() as db:
                # Re-read inside the write lock: another process may have migrated meanwhile.
                if db.execute("PRAGMA user_version").fetchone()[0] >= migration.version:
                    continue
                for statement in migration.statements:
                    db.execute(statement)
                if migration.version == 1:
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('gallery_id', ?), ('created_at', ?)",
                        (uuid.uuid4().hex, utc_now()),
                    )
                db.execute(f"PRAGMA user_version = {migration.version}")

    @property
    def gallery_id(self) -> str:
        """A random id fixed when the file was created (ties index files to their database)."""
        return str(self._query("SELECT value FROM meta WHERE key = 'gallery_id'")[0][0])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` plus a foreign-key check: ``"ok"`` when sound."""
        rows = self._query("PRAGMA integrity_check")
        result = "; ".join(str(r[0]) for r in rows)
        if result != "ok":
            return result
        dangling = self._query("PRAGMA foreign_key_check")
        return "ok" if not dangling else f"{len(dangling)} rows with dangling references"

    # -- writes ---------------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        faces: Sequence[NewFace],
        model: ModelKey,
        *,
        person_id: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Person, list[int], tuple[int, int]]:
        """Create a person (or add to ``person_id``) with ``faces``, in one transaction.

        Faces whose image is already enrolled for this person and model are skipped. Returns
        the person, the ids of the new faces, and the model's revision before and after.
        """
        name = name.strip() if name else ""
        if person_id is None and not name:
            raise DataFormatError("a person needs a non-empty name")
        meta_json = json.dumps(metadata or {}, ensure_ascii=False, sort_keys=True)
        now = utc_now()
        with self.transaction() as db:
            before = self._revision(db, model)
            if person_id is None:
                cur = db.execute(
                    "INSERT INTO persons (name, metadata, created_at) VALUES (?, ?, ?)",
                    (name, meta_json, now),
                )
                person_id = int(cur.lastrowid)
            else:
                if (
                    db.execute("SELECT 1 FROM persons WHERE id = ?", (person_id,)).fetchone()
                    is None
                ):
                    raise UnknownPersonError(f"no person with id {person_id}")
                if metadata:
                    db.execute(
                        "UPDATE persons SET metadata = json_patch(metadata, ?) WHERE id = ?",
                        (meta_json, person_id),
                    )
            face_ids = self._insert_faces(db, person_id, faces, model, now)
            after = self._revision(db, model)
        return self.person(person_id), face_ids, (before, after)

    def _insert_faces(
        self,
        db: sqlite3.Connection,
        person_id: int,
        faces: Sequence[NewFace],
        model: ModelKey,
        now: str,
    ) -> list[int]:
        have = {
            r[0]
            for r in db.execute(
                "SELECT image_sha256 FROM faces WHERE person_id = ? AND model_name = ? "
                "AND model_version = ?",
                (person_id, model.name, model.version),
            )
        }
        ids = []
        for face in faces:
            vector = np.asarray(face.embedding, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(vector)):
                raise DataFormatError("refusing to store an embedding with NaN or inf")
            if face.photo is not None:
                db.execute(
                    "INSERT OR IGNORE INTO photos (person_id, sha256, data, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (person_id, face.image_sha256, face.photo, now),
                )
            if face.image_sha256 in have:
                continue
            have.add(face.image_sha256)
            box = (
                json.dumps([round(float(v), 2) for v in face.box]) if face.box is not None else None
            )
            cur = db.execute(
                "INSERT INTO faces (person_id, model_name, model_version, dim, embedding, "
                "image_sha256, box, det_score, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    person_id,
                    model.name,
                    model.version,
                    int(vector.size),
                    encode_embedding(vector),
                    face.image_sha256,
                    box,
                    None if face.det_score is None else float(face.det_score),
                    now,
                ),
            )
            ids.append(int(cur.lastrowid))
        return ids

    def remove_person(self, person_id: int) -> None:
        """Delete a person with all their faces and photos."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM persons WHERE id = ?", (person_id,))
            if cur.rowcount == 0:
                raise UnknownPersonError(f"no person with id {person_id}")

    def remove_model(self, model: ModelKey) -> int:
        """Delete every face of ``model``; returns how many."""
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM faces WHERE model_name = ? AND model_version = ?",
                (model.name, model.version),
            )
            return int(cur.rowcount)

    # -- reads ----------------------------------------------------------------------------

    def person(self, person_id: int) -> Person:
        people = self._persons("WHERE id = ?", [person_id])
        if not people:
            raise UnknownPersonError(f"no person with id {person_id}")
        return people[0]

    def person_names(self) -> list[tuple[int, str]]:
        return [(int(i), n) for i, n in self._query("SELECT id, name FROM persons ORDER BY id")]

    def persons(
        self, *, name: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[Person]:
        """Persons by id, with their faces; ``name`` filters on the exact name."""
        where, params = ("WHERE name = ?", [name.strip()]) if name is not None else ("", [])
        params += [-1 if limit is None else int(limit), int(offset)]
        return self._persons(f"{where} ORDER BY id LIMIT ? OFFSET ?", params)

    def _persons(self, clause: str, params: list[Any]) -> list[Person]:
        rows = self._query(f"SELECT id, name, metadata, created_at FROM persons {clause}", params)
        ids = [int(r[0]) for r in rows]
        faces, photos = [], []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            faces += self._query(
                "SELECT id, person_id, model_name, model_version, image_sha256, box, det_score, "
                f"created_at FROM faces WHERE person_id IN ({marks}) ORDER BY id",
                chunk,
            )
            photos += self._query(
                f"SELECT person_id, count(*) FROM photos WHERE person_id IN ({marks}) "
                "GROUP BY person_id",
                chunk,
            )
        by_person = self._face_records(faces)
        return [self._person(r, by_person, dict(photos)) for r in rows]

    def count_persons(self, name: str | None = None) -> int:
        if name is not None:
            rows = self._query("SELECT count(*) FROM persons WHERE name = ?", (name.strip(),))
            return int(rows[0][0])
        return int(self._query("SELECT count(*) FROM persons")[0][0])

    def count_faces(self, model: ModelKey | None = None) -> int:
        if model is None:
            return int(self._query("SELECT count(*) FROM faces")[0][0])
        return int(
            self._query(
                "SELECT count(*) FROM faces WHERE model_name = ? AND model_version = ?",
                (model.name, model.version),
            )[0][0]
        )

    def count_photos(self) -> int:
        return int(self._query("SELECT count(*) FROM photos")[0][0])

    def names(self, person_ids: Sequence[int]) -> dict[int, str]:
        if not len(person_ids):
            return {}
        ids = [int(i) for i in person_ids]
        marks = ",".join("?" * len(ids))
        return dict(self._query(f"SELECT id, name FROM persons WHERE id IN ({marks})", ids))

    def models(self) -> list[ModelSummary]:
        """The models whose embeddings the gallery holds, most faces first."""
        rows = self._query(
            "SELECT f.model_name, f.model_version, min(f.dim), count(*), "
            "count(DISTINCT f.person_id), coalesce(r.revision, 0) FROM faces f "
            "LEFT JOIN model_revisions r ON r.model_name = f.model_name "
            "AND r.model_version = f.model_version "
            "GROUP BY f.model_name, f.model_version ORDER BY count(*) DESC"
        )
        return [ModelSummary(ModelKey(r[0], r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def model_keys(self) -> list[ModelKey]:
        """The models the gallery holds faces of (cheap: no scan of the faces)."""
        rows = self._query(
            "SELECT model_name, model_version FROM model_revisions r WHERE EXISTS (SELECT 1 "
            "FROM faces f WHERE f.model_name = r.model_name AND f.model_version = r.model_version)"
        )
        return [ModelKey(name, version) for name, version in rows]

    def revision(self, model: ModelKey) -> int:
        """A counter that every insert or delete of ``model``'s faces bumps."""
        with self._lock:
            return self._revision(self._db, model)

    @staticmethod
    def _revision(db: sqlite3.Connection, model: ModelKey) -> int:
        row = db.execute(
            "SELECT revision FROM model_revisions WHERE model_name = ? AND model_version = ?",
            (model.name, model.version),
        ).fetchone()
        return int(row[0]) if row else 0

    def face_owners(self, model: ModelKey) -> tuple[np.ndarray, np.ndarray, int]:
        """All of ``model``'s face ids and their person ids (sorted by face id), and the
        revision they reflect, read in one snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                revision = self._revision(self._db, model)
                rows = self._db.execute(
                    "SELECT id, person_id FROM faces WHERE model_name = ? AND model_version = ? "
                    "ORDER BY id",
                    (model.name, model.version),
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0].copy(), arr[:, 1].copy(), revision

    def embeddings(
        self, model: ModelKey, face_ids: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Face ids, person ids and (N, dim) embeddings of ``model`` (all, or ``face_ids``)."""
        base = (
            "SELECT id, person_id, dim, embedding FROM faces "
            "WHERE model_name = ? AND model_version = ?"
        )
        if face_ids is None:
            rows = self._query(base + " ORDER BY id", (model.name, model.version))
        else:
            rows = []
            ids = [int(i) for i in face_ids]
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                rows += self._query(
                    f"{base} AND id IN ({marks}) ORDER BY id", (model.name, model.version, *chunk)
                )
        dims = {r[2] for r in rows}
        if len(dims) > 1:
            raise DataFormatError(f"{self.path}: model {model} has embeddings of sizes {dims}")
        return face_arrays(rows, lambda: decode_embeddings([r[3] for r in rows], dims.pop()))

    def iter_faces(self, model: ModelKey) -> Iterator[tuple[int, int, str]]:
        """(face id, person id, image sha256) of every face of ``model``."""
        yield from self._query(
            "SELECT id, person_id, image_sha256 FROM faces WHERE model_name = ? "
            "AND model_version = ? ORDER BY id",
            (model.name, model.version),
        )

    def has_face(self, person_id: int, image_sha256: str, model: ModelKey) -> bool:
        return bool(
            self._query(
                "SELECT 1 FROM faces WHERE person_id = ? AND image_sha256 = ? AND model_name = ? "
                "AND model_version = ?",
                (person_id, image_sha256, model.name, model.version),
            )
        )

    def photo(self, person_id: int, image_sha256: str) -> bytes | None:
        rows = self._query(
            "SELECT data FROM photos WHERE person_id = ? AND sha256 = ?", (person_id, image_sha256)
        )
        return bytes(rows[0][0]) if rows else None

    # -- copying between backends ----------------------------------------------------------

    def _page(self, sql: str, last: int, chunk: int) -> list[tuple]:
        return self._query(sql, (last, chunk))

    def _to_vector(self, value: Any) -> np.ndarray:
        return np.frombuffer(value, EMBEDDING_DTYPE).copy()

    def load(self, dump: GalleryDump) -> None:
        """Write ``dump`` into this gallery, which must hold no persons, keeping every id;
        one transaction: on any error nothing is written."""
        with self.transaction() as db:
            if db.execute("SELECT count(*) FROM persons").fetchone()[0]:
                raise DataFormatError(f"{self.location}: not empty (it holds persons)")
            for persons in dump.persons:
                db.executemany(
                    "INSERT INTO persons (id, name, metadata, created_at) VALUES (?, ?, ?, ?)",
                    [(p.id, p.name, _json(p.metadata), p.created_at) for p in persons],
                )
            for faces in dump.faces:
                db.executemany(
                    "INSERT INTO faces (id, person_id, model_name, model_version, dim, "
                    "embedding, image_sha256, box, det_score, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            f.id,
                            f.person_id,
                            f.model.name,
                            f.model.version,
                            int(f.embedding.size),
                            encode_embedding(f.embedding),
                            f.image_sha256,
                            None if f.box is None else _json(f.box),
                            f.det_score,
                            f.created_at,
                        )
                        for f in faces
                    ],
                )
            for photos in dump.photos:
                db.executemany(
                    "INSERT INTO photos (id, person_id, sha256, data, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(p.id, p.person_id, p.sha256, p.data, p.created_at) for p in photos],
                )
            for table, seq in dump.next_ids.items():
                if table in ("persons", "faces", "photos") and seq > 0:
                    db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
                    max_id = db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
                    db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                        (table, max(seq, max_id)),
                    )

    def next_ids(self) -> dict[str, int]:
        """Per table, the highest id handed out so far."""
        return {t: int(n) for t, n in self._query("SELECT name, seq FROM sqlite_sequence")}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def face_arrays(
    rows: Sequence[tuple], vectors: Callable[[], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face ids, person ids (the first two columns of ``rows``) and the (N, dim) embeddings
    ``vectors`` decodes from them; empty arrays where there are no rows."""
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    owners = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    return ids, owners, vectors()
