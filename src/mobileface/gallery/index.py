"""Nearest-neighbour search over one model's embeddings, and per-person aggregation.

Two face-level indexes share one interface (keys are face ids, scores are cosine similarities
of L2-normalised vectors):

- :class:`ExactIndex`: the whole matrix in memory, one matrix-vector product per query.
  Exact; the default for small galleries.
- :class:`HNSWIndex`: an approximate HNSW graph (FAISS), for large galleries: the graph walks
  8-bit codes of the vectors, and the best candidates are re-scored exactly on the float
  vectors. Updated in place as faces come and go, saved next to the database.

:class:`ModelIndex` keeps one of them in step with a :class:`~.store.GalleryStore`: SQLite is
the truth, the index a cache of it. On open it loads the saved index file (if it belongs to
this database and model) and reconciles it with SQLite by face id, adding what is missing and
dropping what is gone, so a stale, missing or corrupt file costs time, never results. Before
each search it compares the model's revision counter in SQLite with the one it last saw, so
enrolments made by other processes are picked up too.

Persons are ranked by aggregating their faces' scores: ``max`` (the best face; exact for the
exact index) or ``mean`` (the mean over all of the person's enrolled faces, recomputed exactly
for the candidates the face search returns).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from mobileface.errors import DataFormatError, MissingDependencyError

from .store import GalleryStore, ModelKey

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "exact", "approx"]
Aggregate = Literal["max", "mean"]
AGGREGATES = ("max", "mean")
INDEX_KINDS = ("auto", "exact", "approx")
INDEX_FORMAT = 2  # 2: 8-bit graph + exact re-scoring (1, a float graph, is rebuilt)

# "auto" uses the approximate index from this many faces on: below it the exact search takes
# under about 5 ms on one core, and is exact (see benchmarks/bench_gallery.py).
DEFAULT_APPROX_THRESHOLD = 200_000


class FaceIndex(Protocol):
    dim: int

    def __len__(self) -> int: ...
    def keys(self) -> np.ndarray: ...
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, keys: np.ndarray) -> None: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def vectors(self, keys: np.ndarray) -> np.ndarray: ...


class ExactIndex:
    """Brute-force inner-product search over an in-memory (N, dim) float32 matrix."""

    kind = "exact"

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self._keys = np.zeros(0, np.int64)
        self._vecs = np.zeros((0, self.dim), np.float32)
        self._n = 0
        self._pos: dict[int, int] | None = None

    def __len__(self) -> int:
        return self._n

    def keys(self) -> np.ndarray:
        return self._keys[: self._n].copy()

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, np.int64).reshape(-1)
        vectors = np.asarray(vectors, np.float32).reshape(len(keys), self.dim)
        need = self._n + len(keys)
        if need > len(self._keys):  # grow geometrically: appends stay amortised O(1)
            cap = max(need, 2 * len(self._keys), 1024)
            self._keys = np.resize(self._keys, cap)
            vecs = np.zeros((cap, self.dim), np.float32)
            vecs[: self._n] = self._vecs[: self._n]
            self._vecs = vecs
        self._keys[self._n : need] = keys
        self._vecs[self._n : need] = vectors
        self._n = need
        self._pos = None

    def remove(self, keys: np.ndarray) -> None:
        gone = np.isin(self._keys[: self._n], np.asarray(keys, np.int64))
        if not gone.any():
            return
        keep = ~gone
        n = int(keep.sum())
        self._keys[:n] = self._keys[: self._n][keep]
        self._vecs[:n] = self._vecs[: self._n][keep]
        self._n = n
        self._pos = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        k = min(int(k), self._n)
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        scores = queries @ self._vecs[: self._n].T
        if k < self._n:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(self._n), scores.shape).copy()
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return self._keys[top], np.take_along_axis(top_scores, order, axis=1)

    def scores(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every key and its score against one query (for exact per-person aggregation)."""
        return self._keys[: self._n], self._vecs[: self._n] @ np.asarray(query, np.float32)

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        if self._pos is None:
            self._pos = {int(k): i for i, k in enumerate(self._keys[: self._n])}
        rows = [self._pos[int(k)] for k in np.asarray(keys).reshape(-1)]
        return self._vecs[rows]


@dataclass(frozen=True)
class HNSWParams:
    """HNSW graph settings: ``connectivity`` (M), ``expansion_add`` (efConstruction),
    ``expansion_search`` (ef; raise it for recall, lower it for speed) and ``rerank`` (how many
    candidates per wanted result the FAISS index re-scores exactly on the float vectors).

    The defaults were chosen on 1M synthetic faces spread like a trained model's: recall@1
    against exact search 0.998 (genuine probes) and 0.989 (random impostors) in 4.7 ms on
    one core; M 64 with efConstruction 128 builds twice as fast and reached 0.984 in 5.2 ms.
    See benchmarks/bench_gallery.py and the README's Galleries section.
    """

    connectivity: int = 48
    expansion_add: int = 256
    expansion_search: int = 512
    rerank: int = 4


# Gallery embeddings are L2-normalised, so every component lies in [-1, 1]: the 8-bit codes
# use that fixed range, valid from the first face on, with no training data needed.
CODE_RANGE = 1.0


class HNSWIndex:
    """Approximate inner-product search on an HNSW graph (FAISS).

    The graph is built and walked on 8-bit codes of the vectors (``IndexHNSWSQ``: a quarter
    of the memory traffic of floats, so a wider search for the same time); the best
    ``rerank`` x k candidates are then re-scored exactly on the float vectors
    (``IndexRefineFlat``), so scores and near-ties are exact.

    FAISS numbers vectors in insertion order; ``_labels`` maps those numbers to face ids.
    HNSW graphs cannot drop nodes, so a removed face becomes a tombstone that searches skip
    (a FAISS id selector); once tombstones pass a quarter of the graph it is rebuilt from the
    live vectors.
    """

    kind = "approx"

    def __init__(self, dim: int, params: HNSWParams | None = None, threads: int = 0) -> None:
        self.dim = int(dim)
        self.params = params or HNSWParams()
        self.threads = threads or (os.cpu_count() or 1)
        self._index = self._new_graph()
        self._ef = self.params.expansion_search
        self._labels = np.zeros(0, np.int64)  # face id of each FAISS number
        self._alive = np.zeros(0, bool)
        self._selector: Any = None  # skips tombstones; None when there are none
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # sorted labels, positions

    def _new_graph(self) -> Any:
        faiss = _faiss()
        graph = faiss.IndexHNSWSQ(
            self.dim,
            faiss.ScalarQuantizer.QT_8bit_uniform,
            self.params.connectivity,
            _inner_product(faiss),
        )
        graph.hnsw.efConstruction = self.params.expansion_add
        graph.train(np.stack([np.full(self.dim, -CODE_RANGE), np.full(self.dim, CODE_RANGE)]))
        return faiss.IndexRefineFlat(graph)  # keeps a reference to the graph

    def __len__(self) -> int:
        return int(self._alive.sum())

    @property
    def expansion_search(self) -> int:
        """Search width (ef): higher finds the true nearest more often, and takes longer."""
        return self._ef

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._ef = int(value)

    def keys(self) -> np.ndarray:
        return self._labels[self._alive].copy()

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, np.int64).reshape(-1)
        if not len(keys):
            return
        self.remove(keys)  # a face added again replaces its old vector
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(keys), self.dim)
        with _omp_threads(self.threads):
            self._index.add(vectors)
        self._labels = np.concatenate([self._labels, keys])
        self._alive = np.concatenate([self._alive, np.ones(len(keys), bool)])
        self._lookup = None

    def remove(self, keys: np.ndarray) -> None:
        positions = self._positions(np.asarray(keys, np.int64).reshape(-1))
        positions = positions[positions >= 0]
        positions = positions[self._alive[positions]]
        if not len(positions):
            return
        self._alive[positions] = False
        dead = len(self._alive) - int(self._alive.sum())
        if dead > max(1000, len(self._alive) // 4):
            self._compact()
        else:
            self._update_selector()

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """FAISS numbers of ``keys`` (live ones preferred), -1 where unknown."""
        if self._lookup is None:
            # Live entries sort after dead ones, so the last match of a key is its live one.
            order = np.lexsort((self._alive, self._labels))
            self._lookup = (self._labels[order], order)
        labels, order = self._lookup
        right = np.searchsorted(labels, keys, side="right") - 1
        ok = (right >= 0) & (labels[np.clip(right, 0, None)] == keys) if len(labels) else right < -1
        return np.where(ok, order[np.clip(right, 0, None)] if len(order) else -1, -1)

    def _update_selector(self) -> None:
        faiss = _faiss()
        dead = np.flatnonzero(~self._alive).astype(np.int64)
        if not len(dead):
            self._selector = None
            return
        batch = faiss.IDSelectorBatch(dead)
        selector = faiss.IDSelectorNot(batch)
        selector.referenced = batch  # keep the inner selector alive as long as the outer one
        self._selector = selector
        self._lookup = None

    def _compact(self) -> None:
        """Rebuild the graph from the live vectors (drops the tombstones)."""
        live = np.flatnonzero(self._alive)
        vectors = self._index.reconstruct_batch(live.astype(np.int64))
        labels = self._labels[live]
        self._index = self._new_graph()
        self._labels = np.zeros(0, np.int64)
        self._alive = np.zeros(0, bool)
        self._selector = None
        self._lookup = None
        self.add(labels, vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dim)
        k = min(int(k), len(self))
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        walk = faiss.SearchParametersHNSW()
        walk.efSearch = max(self._ef, k * self.params.rerank)
        if self._selector is not None:
            walk.sel = self._selector
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = float(self.params.rerank)
        params.base_index_params = walk
        # One query runs on the calling thread alone: FAISS would otherwise open an OpenMP
        # team for it, and waiting on that team costs more than the search (about 2x at 1M
        # faces on a busy 2-core machine).
        with _omp_threads(1 if len(queries) == 1 else self.threads):
            scores, numbers = self._index.search(queries, k, params=params)
        keys = np.where(numbers >= 0, self._labels[np.clip(numbers, 0, None)], -1)
        return keys.astype(np.int64), np.where(numbers >= 0, scores, -np.inf).astype(np.float32)

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64).reshape(-1)
        positions = self._positions(keys)
        if (positions < 0).any() or not self._alive[positions].all():
            raise KeyError(f"faces {keys[positions < 0].tolist()} are not in the index")
        return self._index.reconstruct_batch(positions.astype(np.int64)).reshape(-1, self.dim)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to restore the index, as arrays (see :meth:`from_arrays`)."""
        return {
            "faiss": _faiss().serialize_index(self._index),
            "labels": self._labels,
            "alive": self._alive,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], params: HNSWParams | None = None, threads: int = 0
    ) -> HNSWIndex:
        faiss = _faiss()
        graph = faiss.deserialize_index(np.asarray(arrays["faiss"], np.uint8))
        labels = np.asarray(arrays["labels"], np.int64)
        alive = np.asarray(arrays["alive"], bool)
        if not isinstance(graph, faiss.IndexRefineFlat) or graph.ntotal != len(labels):
            raise DataFormatError("not a saved gallery index (or a damaged one)")
        if len(alive) != len(labels):
            raise DataFormatError("damaged gallery index: labels and flags disagree")
        index = cls(graph.d, params, threads)
        index._index, index._labels, index._alive = graph, labels, alive
        index._update_selector()
        return index


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise MissingDependencyError(
            "the approximate gallery index needs FAISS: pip install faiss-cpu"
        ) from exc
    return faiss


def _inner_product(faiss: Any) -> int:
    return faiss.METRIC_INNER_PRODUCT


class _omp_threads:  # noqa: N801 - used as a context manager
    """Let FAISS use ``n`` OpenMP threads in this thread for one call, then restore."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        faiss = _faiss()
        self._before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(1, self.n))

    def __exit__(self, *exc: object) -> None:
        _faiss().omp_set_num_threads(self._before)


@dataclass(frozen=True)
class PersonHit:
    person_id: int
    score: float
    face_id: int  # the person's best-scoring face


class ModelIndex:
    """The search index of one model's faces in a gallery, kept in step with SQLite."""

    def __init__(
        self,
        store: GalleryStore,
        model: ModelKey,
        *,
        kind: IndexKind = "auto",
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        hnsw: HNSWParams | None = None,
        persist: bool = True,
        threads: int = 0,
    ) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, not {kind!r}")
        self.store = store
        self.model = model
        self.requested_kind = kind
        self.approx_threshold = int(approx_threshold)
        self.hnsw_params = hnsw or HNSWParams()
        self.persist = persist
        self.threads = threads
        self._lock = threading.RLock()
        self._index: ExactIndex | HNSWIndex | None = None
        self._face_ids = np.zeros(0, np.int64)  # sorted
        self._owners = np.zeros(0, np.int64)  # person id of each face in _face_ids
        self._by_person: tuple[np.ndarray, np.ndarray] | None = None
        self._revision = -1
        self._saved_revision = -1
        self._loaded_from_file = False
        self.dim: int | None = None

    # -- where the index file lives ---------------------------------------------------------

    @property
    def path(self) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(self.model))
        return self.store.path.with_name(f"{self.store.path.name}.{safe}.hnsw")

    @property
    def kind(self) -> str:
        return self._index.kind if self._index is not None else "exact"

    @property
    def face_index(self) -> ExactIndex | HNSWIndex | None:
        """The underlying face-level index (``None`` until there are faces)."""
        return self._index

    def __len__(self) -> int:
        return len(self._face_ids)

    # -- keeping in step with SQLite --------------------------------------------------------

    def sync(self) -> None:
        """Bring the index up to date with SQLite (cheap when nothing changed)."""
        with self._lock:
            if self._index is not None and self.store.revision(self.model) == self._revision:
                return
            face_ids, owners, revision = self.store.face_owners(self.model)
            if self._index is None:
                self._open(face_ids, revision)
                if self._loaded_from_file and not self._matches_database(face_ids):
                    log.warning("%s disagrees with the database: rebuilding", self.path)
                    self._index = HNSWIndex(self.dim or 0, self.hnsw_params, self.threads)
                self._loaded_from_file = False
            if self._index is not None:
                self._reconcile(face_ids)
            self._face_ids, self._owners, self._by_person = face_ids, owners, None
            self._revision = revision

    def _choose_kind(self, count: int) -> str:
        if self.requested_kind == "auto":
            return "approx" if count >= self.approx_threshold else "exact"
        return self.requested_kind

    def _open(self, face_ids: np.ndarray, revision: int) -> None:
        """Create the index (loading a saved one if it fits); none while there are no faces."""
        if not len(face_ids):
            return
        _, _, first = self.store.embeddings(self.model, face_ids[:1])
        self.dim = int(first.shape[1])
        if self._choose_kind(len(face_ids)) == "approx":
            index = self._load_saved(revision) if self.persist else None
            self._loaded_from_file = index is not None
            self._index = index or HNSWIndex(self.dim, self.hnsw_params, self.threads)
        else:
            self._index = ExactIndex(self.dim)

    def _load_saved(self, revision: int) -> HNSWIndex | None:
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            meta = json.loads(str(arrays.pop("meta")))
            expected = {
                "format": INDEX_FORMAT,
                "gallery_id": self.store.gallery_id,
                "model": str(self.model),
                "dim": self.dim,
            }
            if any(meta.get(k) != v for k, v in expected.items()):
                log.warning("%s belongs to another gallery or model: rebuilding", self.path)
                return None
            if int(meta.get("revision", -1)) > revision:
                # Saved after changes the database no longer has (restored from a backup?):
                # face ids may have been reused since, so its vectors cannot be trusted.
                log.warning("%s is ahead of the database: rebuilding", self.path)
                return None
            index = HNSWIndex.from_arrays(arrays, self.hnsw_params, self.threads)
            self._saved_revision = int(meta["revision"])
            log.info("loaded %s (%d faces)", self.path, len(index))
            return index
        except Exception as exc:  # noqa: BLE001 - any unreadable file: rebuild from SQLite
            log.warning("%s unreadable (%s): rebuilding from the database", self.path, exc)
            return None

    def _matches_database(self, face_ids: np.ndarray, sample: int = 256) -> bool:
        """Spot-check a loaded index against SQLite: the newest shared faces (where ids
        reused after a database restore would be) and a random sample of the rest."""
        assert self._index is not None
        common = np.intersect1d(self._index.keys(), face_ids, assume_unique=True)
        if not len(common):
            return True
        rng = np.random.default_rng(len(common))
        picked = np.union1d(common[-sample:], rng.choice(common, min(sample, len(common))))
        ids, _, stored = self.store.embeddings(self.model, picked)
        return bool(np.allclose(self._index.vectors(ids), stored, atol=1e-5))

    def _reconcile(self, face_ids: np.ndarray) -> None:
        """Make the index hold exactly ``face_ids`` (SQLite's truth), by difference."""
        assert self._index is not None
        have = self._index.keys()
        stale = np.setdiff1d(have, face_ids, assume_unique=True)
        missing = np.setdiff1d(face_ids, have, assume_unique=True)
        if len(stale):
            self._index.remove(stale)
        for start in range(0, len(missing), 50_000):
            ids, _, vecs = self.store.embeddings(self.model, missing[start : start + 50_000])
            self._check_dim(vecs)
            self._index.add(ids, vecs)
            log.debug("index %s: %d of %d faces added", self.model, start + len(ids), len(missing))
        if len(stale) or len(missing):
            log.info("index %s: +%d -%d faces", self.model, len(missing), len(stale))

    def _check_dim(self, vecs: np.ndarray) -> None:
        if len(vecs) and vecs.shape[1] != self.dim:
            raise DataFormatError(
                f"model {self.model}: embeddings of size {vecs.shape[1]}, index of {self.dim}"
            )

    def added(
        self, face_ids: list[int], person_id: int, vectors: np.ndarray, revisions: tuple[int, int]
    ) -> None:
        """Record faces this process has just committed (``revisions``: before and after)."""
        with self._lock:
            if self._index is None or revisions[0] != self._revision:
                self._revision = -1  # someone else wrote meanwhile: full reconcile next time
                return
            if face_ids:
                vecs = np.asarray(vectors, np.float32).reshape(len(face_ids), -1)
                self._check_dim(vecs)
                ids = np.asarray(face_ids, np.int64)
                self._index.add(ids, vecs)
                self._face_ids = np.concatenate([self._face_ids, ids])
                self._owners = np.concatenate([self._owners, np.full(len(ids), person_id)])
                if len(self._face_ids) > len(ids) and self._face_ids[-len(ids) - 1] > ids[0]:
                    order = np.argsort(self._face_ids, kind="stable")
                    self._face_ids, self._owners = self._face_ids[order], self._owners[order]
                self._by_person = None
            self._revision = revisions[1]

    def save(self, force: bool = False) -> bool:
        """Write the approximate index next to the database (one file, replaced atomically);
        the exact index needs none."""
        with self._lock:
            if not (self.persist and isinstance(self._index, HNSWIndex)):
                return False
            if not force and self._saved_revision == self._revision:
                return False
            meta = {
                "format": INDEX_FORMAT,
                "gallery_id": self.store.gallery_id,
                "model": str(self.model),
                "dim": self.dim,
                "revision": self._revision,
                "faces": len(self._index),
                "hnsw": self.hnsw_params.__dict__,
            }
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            try:
                with open(tmp, "wb") as out:
                    np.savez(out, meta=np.array(json.dumps(meta)), **self._index.to_arrays())
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            self._saved_revision = self._revision
            return True

    @property
    def dirty(self) -> bool:
        return isinstance(self._index, HNSWIndex) and self._saved_revision != self._revision

    # -- search ---------------------------------------------------------------------------

    def search(
        self, query: np.ndarray, k: int = 5, aggregate: Aggregate = "max", *, sync: bool = True
    ) -> list[PersonHit]:
        """The ``k`` best persons for one L2-normalised query, best first."""
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, not {aggregate!r}")
        if sync:
            self.sync()
        with self._lock:
            index = self._index
            if index is None or not len(self._face_ids) or k <= 0:
                return []
            query = np.asarray(query, np.float32).reshape(-1)
            if query.size != index.dim:
                raise DataFormatError(
                    f"query of size {query.size}, gallery model {self.model} has {index.dim}"
                )
            if aggregate == "mean" and isinstance(index, ExactIndex):
                return self._exact_mean(index, query, k)
            hits = self._best_faces(index, query, k)
            if aggregate == "mean":
                hits = self._rerank_mean(index, query, hits, k)
            return hits[:k]

    def _best_faces(self, index: FaceIndex, query: np.ndarray, k: int) -> list[PersonHit]:
        """Persons in order of their best face, widening the face search until ``k`` distinct
        persons are found (exact for the exact index: anyone missing scores lower)."""
        n = len(index)
        want = min(n, max(4 * k, 16))
        while True:
            keys, scores = index.search(query[None], want)
            keys, scores = keys[0], scores[0]
            ok = keys >= 0
            keys, scores = keys[ok], scores[ok]
            owners = self._owner_of(keys)
            seen: dict[int, PersonHit] = {}
            for key, score, owner in zip(keys, scores, owners, strict=True):
                if owner >= 0 and owner not in seen:
                    seen[int(owner)] = PersonHit(int(owner), float(score), int(key))
            if len(seen) >= k or want >= n:
                return list(seen.values())
            want = min(n, want * 4)

    def _exact_mean(self, index: ExactIndex, query: np.ndarray, k: int) -> list[PersonHit]:
        keys, scores = index.scores(query)
        owners = self._owner_of(keys)
        persons, inverse = np.unique(owners, return_inverse=True)
        means = np.bincount(inverse, weights=scores) / np.bincount(inverse)
        hits = []
        for i in np.argsort(-means, kind="stable")[:k]:
            mine = np.flatnonzero(inverse == i)
            best_face = keys[mine[np.argmax(scores[mine])]]
            hits.append(PersonHit(int(persons[i]), float(means[i]), int(best_face)))
        return hits

    def _rerank_mean(
        self, index: FaceIndex, query: np.ndarray, hits: list[PersonHit], k: int
    ) -> list[PersonHit]:
        face_ids, owners = self._person_table()
        out = []
        for hit in hits[: max(2 * k, k + 8)]:
            lo = np.searchsorted(owners, hit.person_id, "left")
            hi = np.searchsorted(owners, hit.person_id, "right")
            vecs = index.vectors(face_ids[lo:hi])
            out.append(PersonHit(hit.person_id, float(np.mean(vecs @ query)), hit.face_id))
        out.sort(key=lambda h: -h.score)
        return out

    def _owner_of(self, keys: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._face_ids, keys)
        pos = np.clip(pos, 0, max(len(self._face_ids) - 1, 0))
        found = self._face_ids[pos] == keys if len(self._face_ids) else np.zeros(len(keys), bool)
        return np.where(found, self._owners[pos] if len(self._owners) else -1, -1)

    def _person_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Face ids grouped by person (sorted by person id), and their person ids."""
        if self._by_person is None:
            order = np.argsort(self._owners, kind="stable")
            self._by_person = (self._face_ids[order], self._owners[order])
        return self._by_person
