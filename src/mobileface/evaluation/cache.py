"""A persistent cache of embeddings (and face detections), so that re-evaluating is cheap.

Entries live in one SQLite database, by default ``<cache dir>/evaluation.sqlite`` (the cache
dir is ``MOBILEFACE_CACHE`` or ``~/.cache/mobileface``). Each entry is keyed by a SHA-256 over
everything its value depends on: for an embedding, the model file's bytes, the preprocessing
(input size, mean, std, channel order, flip, aligned or detected, the detector and the fallback)
and the image file's bytes; so a changed model, image or setting is never served a stale value,
and renaming files costs nothing.

Values are raw little-endian arrays with their dtype and shape beside them (never pickle, so a
tampered cache file cannot run code). Each batch of writes is one SQLite transaction: a process
killed mid-write leaves the database as it was before that batch.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mobileface.errors import MobileFaceError
from mobileface.paths import cache_dir

SCHEMA_VERSION = 1
_ALLOWED_DTYPES = {"float32", "float64", "int32", "int64", "uint8", "bool"}


def default_cache_path() -> Path:
    return cache_dir() / "evaluation.sqlite"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_key(kind: str, *parts: Any) -> str:
    """A stable key: SHA-256 of ``kind`` and the JSON of ``parts`` (sorted keys)."""
    text = json.dumps([SCHEMA_VERSION, kind, *parts], sort_keys=True, separators=(",", ":"))
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()}"


class EmbeddingCache:
    """Arrays by key in a SQLite file, with hit and miss counters.

    ``hits`` and ``misses`` count :meth:`get_many` look-ups; ``writes`` counts stored entries.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.hits = 0
        self.misses = 0
        self.writes = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " key TEXT PRIMARY KEY, dtype TEXT NOT NULL, shape TEXT NOT NULL,"
                " data BLOB NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.commit()
        except sqlite3.Error as exc:
            raise MobileFaceError(f"{self.path}: cannot open the embedding cache: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def get(self, key: str) -> tuple[np.ndarray, dict] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[np.ndarray, dict]]:
        """The stored ``(array, meta)`` of each key found; unreadable entries count as misses."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, tuple[np.ndarray, dict]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, dtype, shape, data, meta FROM entries WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, dtype, shape, data, meta in rows:
                value = _decode(dtype, shape, data, meta)
                if value is not None:
                    found[key] = value
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put(self, key: str, array: np.ndarray, meta: Mapping[str, Any] | None = None) -> None:
        self.put_many([(key, array, meta or {})])

    def put_many(self, items: Iterable[tuple[str, np.ndarray, Mapping[str, Any]]]) -> None:
        """Store all ``items`` in one transaction (all or none)."""
        rows = []
        now = time.time()
        for key, array, meta in items:
            a = np.ascontiguousarray(array)
            if a.dtype.name not in _ALLOWED_DTYPES:
                raise TypeError(f"cannot cache arrays of dtype {a.dtype}")
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            shape = json.dumps(list(a.shape))
            rows.append((key, a.dtype.name, shape, a.tobytes(), json.dumps(dict(meta)), now))
        if not rows:
            return
        with self._db:  # one transaction; rolled back on error
            self._db.executemany(
                "INSERT OR REPLACE INTO entries (key, dtype, shape, data, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        self.writes += len(rows)


def _decode(dtype: str, shape: str, data: bytes, meta: str) -> tuple[np.ndarray, dict] | None:
    try:
        if dtype not in _ALLOWED_DTYPES:
            return None
        dims = tuple(int(d) for d in json.loads(shape))
        array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(dims)
        return array.astype(np.dtype(dtype), copy=True), json.loads(meta)
    except (ValueError, TypeError, json.JSONDecodeError):
        return None
