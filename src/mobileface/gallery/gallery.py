"""Enrolment and 1:N identification: the logic the CLI and the HTTP service share.

A :class:`Gallery` ties a store (:class:`~.backend.GalleryBackend`: a SQLite file or a
PostgreSQL database) to a face encoder (detector + embedding model, see :mod:`.pipeline`) and
searches that model's faces: with an in-process :class:`~.index.ModelIndex` for SQLite, in the
database (:class:`~.postgres.DatabaseIndex`) for PostgreSQL.
Images are decoded, detected and embedded *before* anything is written, and each enrolment is
one transaction: an enrolment is either wholly in the gallery or not at all.

Photos are not stored unless asked (``keep_photos=True``); only each source file's SHA-256 is,
which is how :meth:`Gallery.reembed` finds the files again when the gallery moves to a new
model.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mobileface.errors import DataFormatError, ImageError, MobileFaceError, NoFaceError

from .backend import GalleryBackend, model_search, open_store
from .index import (
    DEFAULT_APPROX_THRESHOLD,
    Aggregate,
    HNSWParams,
    IndexKind,
)
from .store import ModelKey, ModelMismatchError, NewFace, Person

log = logging.getLogger(__name__)

ImageSource = str | Path | bytes | tuple[str, bytes]
"""A path, encoded bytes, or ``(label, bytes)`` where the label names it in messages."""


class FaceEncoder(Protocol):
    """Turns an RGB image into one L2-normalised embedding and the face it came from."""

    model: ModelKey
    threshold: float | None

    def encode(self, image_rgb: np.ndarray, label: str = "image") -> tuple[np.ndarray, Any]: ...


@dataclass(frozen=True)
class Match:
    person_id: int
    name: str
    score: float
    face_id: int
    same: bool | None = None  # score >= the model's threshold, where one is known

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "score": round(self.score, 6),
            "same": self.same,
            "face_id": self.face_id,
        }


@dataclass(frozen=True)
class Identification:
    face: Any  # mobileface.align.Face
    matches: list[Match]
    threshold: float | None
    model: ModelKey


@dataclass(frozen=True)
class Enrolment:
    person: Person
    added: list[int]  # ids of the new faces
    duplicates: list[str]  # images already enrolled for this person (skipped)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) when skipping


@dataclass(frozen=True)
class ReembedReport:
    source: ModelKey
    target: ModelKey
    embedded: int
    already: int
    missing: list[tuple[int, str]]  # (face id, image sha256) with no photo or file found
    failed: list[tuple[str, str]]
    dropped: int = 0


@dataclass(frozen=True)
class PreparedFace:
    label: str
    sha256: str
    embedding: np.ndarray
    face: Any
    data: bytes
    crop: np.ndarray | None = None  # the aligned crop, only when asked for (display)


def read_source(source: ImageSource) -> tuple[str, bytes]:
    """(label, encoded bytes) of an image source, with a clear error when unreadable."""
    if isinstance(source, tuple):
        label, data = source
        return str(label), bytes(data)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(source)
    path = Path(source)
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file: {exc.strerror or exc}") from None


def face_dict(face: Any) -> dict[str, Any] | None:
    """JSON form of a detected face (box, score, landmarks)."""
    if face is None:
        return None
    out: dict[str, Any] = {"box": [round(float(v), 2) for v in np.asarray(face.box).reshape(-1)]}
    if getattr(face, "score", None) is not None:
        out["score"] = round(float(face.score), 4)
    landmarks = getattr(face, "landmarks", None)
    if landmarks is not None:
        out["landmarks"] = np.round(np.asarray(landmarks, float), 2).tolist()
    if getattr(face, "found_by", None) is not None:
        out["found_by"] = str(face.found_by)
    return out


class Gallery:
    """A gallery searched with one model. Thread-safe."""

    def __init__(
        self,
        store: GalleryBackend,
        encoder: FaceEncoder,
        *,
        index: IndexKind = "auto",
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        hnsw: HNSWParams | None = None,
        max_pixels: int | None = None,
        save_every: int = 1000,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.model = self._resolve_model(encoder.model)
        self.max_pixels = max_pixels
        self.save_every = save_every
        self._unsaved = 0
        self._save_lock = threading.Lock()
        self.index = model_search(
            store, self.model, kind=index, hnsw=hnsw, approx_threshold=approx_threshold
        )

    @classmethod
    def open(cls, db: str | Path, encoder: FaceEncoder, **kwargs: Any) -> Gallery:
        """The gallery ``db`` names: a SQLite file path or a ``postgresql://`` URL."""
        return cls(open_store(db), encoder, **kwargs)

    def _resolve_model(self, model: ModelKey) -> ModelKey:
        """The encoder's model as the gallery knows it: the same weights (same digest) under
        another file name are the same model."""
        for known in self.store.model_keys():
            if known.version == model.version:
                return known
        return model

    def close(self) -> None:
        """Save the approximate index (if any changed) and close the database."""
        try:
            self.index.save()
        finally:
            self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images to embeddings ----------------------------------------------------------------

    def decode(self, source: ImageSource) -> tuple[str, bytes, np.ndarray]:
        from mobileface.image import load_image

        label, data = read_source(source)
        kwargs = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        return label, data, load_image(data, name=label, **kwargs)

    def prepare(self, source: ImageSource, *, with_crop: bool = False) -> PreparedFace:
        """Decode, detect and embed one image (nothing is written).

        ``with_crop`` also keeps the aligned crop the model saw, where the encoder can give it
        (``encode_with_crop``), so a caller can show it.
        """
        label, data, image = self.decode(source)
        crop = None
        encode_with_crop = getattr(self.encoder, "encode_with_crop", None)
        if with_crop and encode_with_crop is not None:
            embedding, face, crop = encode_with_crop(image, label)
        else:
            embedding, face = self.encoder.encode(image, label)
        return PreparedFace(
            label=label,
            sha256=hashlib.sha256(data).hexdigest(),
            embedding=_normalised(embedding),
            face=face,
            data=data,
            crop=crop,
        )

    # -- enrolment -----------------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        images: Sequence[ImageSource],
        *,
        person_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        keep_photos: bool = False,
        skip_bad: bool = False,
    ) -> Enrolment:
        """Enrol ``images`` as a new person called ``name`` (or add them to ``person_id``).

        Every image must show a face (the largest is used); with ``skip_bad`` the ones that
        fail are reported in :attr:`Enrolment.failed` instead, as long as one succeeds.
        """
        if not images:
            raise DataFormatError("enrolment needs at least one image")
        if person_id is None and not (name and name.strip()):
            raise DataFormatError("enrolment needs a non-empty name")
        if person_id is not None:
            self.store.person(person_id)  # fail early on an unknown id
        prepared: list[PreparedFace] = []
        failed: list[tuple[str, str]] = []
        for source in images:
            try:
                prepared.append(self.prepare(source))
            except (ImageError, NoFaceError) as exc:
                if not skip_bad:
                    raise
                failed.append((_label_of(source), str(exc)))
        if not prepared:
            raise NoFaceError(
                "no usable image to enrol: " + "; ".join(reason for _, reason in failed)
            )
        person, added, revisions = self.store.enroll(
            name,
            [
                NewFace(
                    embedding=p.embedding,
                    image_sha256=p.sha256,
                    box=np.asarray(p.face.box).reshape(-1).tolist() if p.face is not None else None,
                    det_score=getattr(p.face, "score", None),
                    photo=p.data if keep_photos else None,
                )
                for p in prepared
            ],
            self.model,
            person_id=person_id,
            metadata=metadata,
        )
        vectors = {p.sha256: p.embedding for p in prepared}
        added_ids = set(added)
        new_faces = [f for f in person.faces if f.id in added_ids]
        self.index.added(
            [f.id for f in new_faces],
            person.id,
            np.stack([vectors[f.image_sha256] for f in new_faces]) if new_faces else np.zeros(0),
            revisions,
        )
        self._maybe_save(len(added))
        added_hashes = {f.image_sha256 for f in new_faces}
        duplicates = [p.label for p in prepared if p.sha256 not in added_hashes]
        return Enrolment(person=person, added=added, duplicates=duplicates, failed=failed)

    def _maybe_save(self, changes: int) -> None:
        """Persist the approximate index now and then (SQLite has the data already)."""
        with self._save_lock:
            self._unsaved += changes
            if self._unsaved < self.save_every:
                return
            self._unsaved = 0
        self.index.save()

    def remove_person(self, person_id: int) -> None:
        self.store.remove_person(person_id)
        self._maybe_save(1)

    def person(self, person_id: int) -> Person:
        return self.store.person(person_id)

    def persons(self, **kwargs: Any) -> list[Person]:
        return self.store.persons(**kwargs)

    # -- identification --------------------------------------------------------------------------

    def identify(
        self, source: ImageSource, top_k: int = 5, aggregate: Aggregate = "max"
    ) -> Identification:
        """The persons most like the face in ``source``, best first."""
        prepared = self.prepare(source)
        matches = self.search(prepared.embedding, top_k, aggregate)
        return Identification(
            face=prepared.face,
            matches=matches,
            threshold=self.encoder.threshold,
            model=self.model,
        )

    def search(self, embedding: np.ndarray, top_k: int = 5, aggregate: Aggregate = "max") -> list:
        """Rank persons against an embedding of this gallery's model."""
        if top_k < 1:
            raise DataFormatError(f"top-k must be at least 1, not {top_k}")
        hits = self.index.search(_normalised(embedding), top_k, aggregate)
        if not hits and len(self.index) == 0:
            self._check_model_present()
        names = self.store.names([h.person_id for h in hits])
        threshold = self.encoder.threshold
        return [
            Match(
                person_id=h.person_id,
                name=names.get(h.person_id, ""),
                score=h.score,
                face_id=h.face_id,
                same=None if threshold is None else bool(h.score >= threshold),
            )
            for h in hits
            if h.person_id in names  # removed between search and lookup: leave it out
        ]

    def _check_model_present(self) -> None:
        others = [m for m in self.store.models() if m.model != self.model]
        if others:
            listing = ", ".join(f"{m.model} ({m.faces} faces)" for m in others)
            raise ModelMismatchError(
                f"{self.store.location} holds no faces embedded by {self.model}, only by "
                f"{listing}; embeddings of different models cannot be compared: search with "
                "that model, or re-embed the gallery for this one (mobileface persons reembed)"
            )

    # -- moving to a new model -----------------------------------------------------------------

    def reembed(
        self,
        source: ModelKey | None = None,
        image_dirs: Iterable[str | Path] = (),
        *,
        drop_old: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReembedReport:
        """Embed every face of model ``source`` again with this gallery's model.

        The images come from stored photos, else from files under ``image_dirs`` whose SHA-256
        matches the one recorded at enrolment. Safe to interrupt and run again: faces already
        re-embedded are skipped. With ``drop_old``, the old model's faces are deleted once
        every one of them has been re-embedded.
        """
        source = source or self._only_other_model()
        if source == self.model:
            raise DataFormatError(f"the gallery is already embedded with {self.model}")
        files = _hash_files(image_dirs) if image_dirs else {}
        faces = list(self.store.iter_faces(source))
        embedded = already = 0
        missing: list[tuple[int, str]] = []
        failed: list[tuple[str, str]] = []
        for done, (face_id, person_id, sha) in enumerate(faces, 1):
            if self.store.has_face(person_id, sha, self.model):
                already += 1
            else:
                data = self.store.photo(person_id, sha)
                label = f"photo {sha[:12]} of person {person_id}"
                if data is None and sha in files:
                    label = str(files[sha])
                    data = files[sha].read_bytes()
                if data is None:
                    missing.append((face_id, sha))
                else:
                    try:
                        self.enroll("", [(label, data)], person_id=person_id)
                        embedded += 1
                    except (ImageError, NoFaceError) as exc:
                        failed.append((label, str(exc)))
            if progress:
                progress(done, len(faces))
        dropped = 0
        if drop_old and not missing and not failed:
            dropped = self.store.remove_model(source)
        return ReembedReport(source, self.model, embedded, already, missing, failed, dropped)

    def _only_other_model(self) -> ModelKey:
        others = [m.model for m in self.store.models() if m.model != self.model]
        if not others:
            raise DataFormatError(f"{self.store.location}: no faces of another model to re-embed")
        if len(others) > 1:
            raise DataFormatError(
                f"{self.store.location} holds faces of several models "
                f"({', '.join(map(str, others))}): name the one to re-embed"
            )
        return others[0]

    # -- health -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        self.index.sync()
        return {
            "persons": self.store.count_persons(),
            "faces": self.store.count_faces(self.model),
            "model": self.model.name,
            "model_version": self.model.version,
            "index": self.index.kind,
            "other_models": [m.to_dict() for m in self.store.models() if m.model != self.model],
        }


def _normalised(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise MobileFaceError("the model returned a zero or non-finite embedding")
    return vector / norm


def _label_of(source: ImageSource) -> str:
    if isinstance(source, tuple):
        return str(source[0])
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(source)


def _hash_files(dirs: Iterable[str | Path]) -> dict[str, Path]:
    """SHA-256 -> path of every image file under ``dirs`` (recursively)."""
    from mobileface.image import IMAGE_EXTENSIONS
    from mobileface.paths import sha256_of

    out: dict[str, Path] = {}
    for root in dirs:
        root = Path(root)
        if not root.exists():
            raise DataFormatError(f"{root}: no such directory")
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in candidates:
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                out.setdefault(sha256_of(path), path)
    return out
