"""The gallery store and its search indexes, on synthetic embeddings (no model needed).

Behaviour both backends share runs on each (``gallery_db``: a SQLite file and a fresh
PostgreSQL database); what is particular to SQLite (WAL, the index file) runs on SQLite.
"""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from mobileface.errors import DataFormatError
from mobileface.gallery import (
    SCHEMA_VERSION,
    ExactIndex,
    GalleryStore,
    HNSWIndex,
    HNSWParams,
    ModelIndex,
    ModelKey,
    NewFace,
    UnknownPersonError,
    model_search,
    open_store,
)
from mobileface.gallery.store import MIGRATIONS

pytest_plugins = ["postgres_helpers"]  # fixtures: gallery_db, postgres

MODEL = ModelKey("synthetic", "0123456789abcdef")
OTHER = ModelKey("synthetic", "fedcba9876543210")
DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def identities(n: int, faces: int, seed: int = 0, noise: float = 0.6):
    """``n`` identity centres and ``faces`` noisy unit embeddings of each."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n, DIM)))
    vecs = unit(centres[:, None, :] + noise / np.sqrt(DIM) * rng.standard_normal((n, faces, DIM)))
    return centres, vecs


def fill(store: GalleryStore, vecs: np.ndarray, model: ModelKey = MODEL) -> list[int]:
    ids = []
    for i, faces in enumerate(vecs):
        person, _, _ = store.enroll(
            f"person {i}",
            [NewFace(v, f"{model.version}-{i}-{j}") for j, v in enumerate(faces)],
            model,
        )
        ids.append(person.id)
    return ids


@pytest.fixture
def store(gallery_db):
    """A new gallery, once on each backend."""
    with open_store(gallery_db) as s:
        yield s


@pytest.fixture
def lite(tmp_path):
    """A new SQLite gallery file."""
    with GalleryStore(tmp_path / "gallery.db") as s:
        yield s


# -- schema, migrations, durability settings ---------------------------------------------------


def test_new_gallery_is_at_the_latest_schema_in_wal_mode(tmp_path, lite):
    store = lite
    assert store.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(tmp_path / "gallery.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    gid = store.gallery_id
    store.close()
    with GalleryStore(tmp_path / "gallery.db") as again:
        assert again.gallery_id == gid
        assert again.integrity_check() == "ok"


def test_a_version_1_file_is_migrated_with_its_data(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].statements:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('gallery_id', 'abc'), ('created_at', 'then')")
    db.execute("INSERT INTO persons (name, created_at) VALUES ('Ada', 'then')")
    vec = unit(np.ones(DIM))
    db.execute(
        "INSERT INTO faces (person_id, model_name, model_version, dim, embedding, image_sha256, "
        "created_at) VALUES (1, ?, ?, ?, ?, 'h', 'then')",
        (MODEL.name, MODEL.version, DIM, vec.tobytes()),
    )
    db.execute("PRAGMA user_version = 1")
    db.close()
    with GalleryStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.gallery_id == "abc"
        person = store.person(1)
        assert person.name == "Ada" and len(person.faces) == 1 and person.photos == 0
        _, _, vecs = store.embeddings(MODEL)
        np.testing.assert_array_equal(vecs[0], vec)
        assert store.revision(MODEL) == 1  # the trigger of version 1 counted the insert
        assert store.integrity_check() == "ok"


def test_a_file_from_a_newer_mobileface_is_refused(tmp_path):
    path = tmp_path / "future.db"
    GalleryStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(DataFormatError, match="newer than this mobileface"):
        GalleryStore(path)


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(DataFormatError, match="notes.db"):
        GalleryStore(path)
    with pytest.raises(DataFormatError, match="no such gallery"):
        GalleryStore(tmp_path / "missing.db", create=False)


# -- writes are whole or absent ----------------------------------------------------------------


def test_an_enrolment_that_fails_midway_leaves_nothing(store):
    good = unit(np.ones(DIM))
    bad = np.full(DIM, np.nan, np.float32)
    with pytest.raises(DataFormatError, match="NaN"):
        store.enroll("Ada", [NewFace(good, "a"), NewFace(bad, "b")], MODEL)
    assert store.count_persons() == 0 and store.count_faces() == 0
    assert store.revision(MODEL) == 0


def test_the_same_image_is_stored_once_per_person_and_model(store):
    vec = unit(np.ones(DIM))
    person, added, (before, after) = store.enroll("Ada", [NewFace(vec, "h")], MODEL)
    assert len(added) == 1 and (before, after) == (0, 1)
    again, added, _ = store.enroll("", [NewFace(vec, "h")], MODEL, person_id=person.id)
    assert added == [] and len(again.faces) == 1
    _, added, _ = store.enroll("", [NewFace(vec, "h")], OTHER, person_id=person.id)
    assert len(added) == 1  # another model's embedding of the same photo is a new face
    assert {m.model for m in store.models()} == {MODEL, OTHER}


def test_removing_a_person_removes_faces_and_photos(store):
    vec = unit(np.ones(DIM))
    person, _, _ = store.enroll("Ada", [NewFace(vec, "h", photo=b"jpeg bytes")], MODEL)
    assert store.person(person.id).photos == 1 and store.photo(person.id, "h") == b"jpeg bytes"
    store.remove_person(person.id)
    assert store.count_faces() == 0
    assert store._query("SELECT count(*) FROM photos")[0][0] == 0
    assert store.revision(MODEL) == 2
    with pytest.raises(UnknownPersonError, match=str(person.id)):
        store.person(person.id)
    with pytest.raises(UnknownPersonError):
        store.remove_person(person.id)
    with pytest.raises(UnknownPersonError):
        store.enroll("", [NewFace(vec, "x")], MODEL, person_id=person.id)


def test_metadata_is_json_and_names_are_required(store):
    person, _, _ = store.enroll(
        "  Ada ", [NewFace(unit(np.ones(DIM)), "h")], MODEL, metadata={"team": "blue", "n": 3}
    )
    assert person.name == "Ada" and person.metadata == {"team": "blue", "n": 3}
    with pytest.raises(DataFormatError, match="name"):
        store.enroll("   ", [NewFace(unit(np.ones(DIM)), "i")], MODEL)


def test_a_person_is_found_by_id_or_by_a_name_only_they_have(store):
    vec = unit(np.ones(DIM))
    bush, _, _ = store.enroll("George W Bush", [NewFace(vec, "a")], MODEL)
    first, _, _ = store.enroll("Ada", [NewFace(vec, "b")], MODEL)
    second, _, _ = store.enroll("Ada", [NewFace(vec, "c")], MODEL)
    numbered, _, _ = store.enroll("1999", [NewFace(vec, "d")], MODEL)
    assert store.find_person("George W Bush").id == bush.id
    assert store.find_person(str(bush.id)).id == bush.id
    assert store.find_person(bush.id).id == bush.id
    assert store.find_person("1999").id == numbered.id  # no id 1999: a name, then
    with pytest.raises(DataFormatError, match=rf"2 persons are called 'Ada' \(ids {first.id}, "):
        store.find_person("Ada")
    with pytest.raises(UnknownPersonError, match="did you mean 'George W Bush'"):
        store.find_person("george_w_bush")
    with pytest.raises(UnknownPersonError, match="no person called 'Nobody'$"):
        store.find_person("Nobody")
    with pytest.raises(UnknownPersonError, match="no person with id"):
        store.find_person(424242)


def test_concurrent_writers_on_separate_connections_lose_nothing(gallery_db):
    path = gallery_db
    open_store(path).close()
    _, vecs = identities(40, 2)
    errors = []

    def writer(part: int) -> None:
        try:
            with open_store(path) as mine:
                for i in range(part, 40, 4):
                    mine.enroll(
                        f"p{i}", [NewFace(v, f"{i}-{j}") for j, v in enumerate(vecs[i])], MODEL
                    )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with open_store(path) as store:
        assert store.count_persons() == 40 and store.count_faces(MODEL) == 80
        assert store.revision(MODEL) == 80
        assert store.integrity_check() == "ok"


# -- the face indexes --------------------------------------------------------------------------


def test_exact_index_matches_brute_force_and_forgets_removed_keys():
    rng = np.random.default_rng(1)
    vecs = unit(rng.standard_normal((500, DIM)))
    index = ExactIndex(DIM)
    index.add(np.arange(300) + 10, vecs[:300])
    index.add(np.arange(300, 500) + 10, vecs[300:])
    queries = unit(rng.standard_normal((7, DIM)))
    keys, scores = index.search(queries, 5)
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :5] + 10
    np.testing.assert_array_equal(keys, truth)
    assert np.all(np.diff(scores, axis=1) <= 0)
    index.remove(truth[:, 0])
    keys, _ = index.search(queries, 5)
    assert not np.isin(truth[:, 0], keys).any()
    assert len(index) == 500 - len(set(truth[:, 0]))
    np.testing.assert_array_equal(index.vectors(np.array([11])), vecs[1:2])


def test_hnsw_index_finds_the_true_neighbour_of_genuine_queries():
    centres, vecs = identities(2000, 1, seed=2, noise=0.5)
    index = HNSWIndex(DIM, threads=1)
    index.add(np.arange(2000), vecs[:, 0])
    keys, scores = index.search(centres[:200], 3)
    assert np.mean(keys[:, 0] == np.arange(200)) >= 0.95, keys[:, 0]
    assert np.all(scores[:, 0] > 0.7)
    index.remove(np.arange(100))  # tombstones, skipped by searches
    keys, _ = index.search(centres[:100], 3)
    assert not np.isin(keys, np.arange(100)).any()
    assert len(index) == 1900 and not np.isin(5, index.keys())
    np.testing.assert_allclose(index.vectors(np.array([150])), vecs[150], atol=1e-6)
    index.add(np.array([5]), vecs[5])  # back again
    assert index.search(centres[5], 1)[0][0, 0] == 5
    index.remove(np.arange(6, 1500))  # most of the graph: rebuilt from the live vectors
    assert len(index) == 501 and len(index._labels) == 501
    keys, _ = index.search(centres[1500:1600], 1)
    assert np.mean(keys[:, 0] == np.arange(1500, 1600)) >= 0.95
    with pytest.raises(KeyError):
        index.vectors(np.array([7]))


def test_hnsw_scores_are_exact_though_the_graph_walks_8_bit_codes():
    """Candidates found on the 8-bit codes are re-scored on the float vectors: the scores are
    the exact inner products (the codes alone are off by their quantisation error)."""
    rng = np.random.default_rng(9)
    vecs = unit(rng.standard_normal((3000, DIM)))
    queries = unit(rng.standard_normal((50, DIM)))
    index = HNSWIndex(DIM, threads=1)
    index.add(np.arange(3000), vecs)
    keys, scores = index.search(queries, 5)
    exact = np.take_along_axis(queries @ vecs.T, keys, axis=1)
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    coded, numbers = index._index.base_index.search(queries, 5)
    assert np.abs(coded - np.take_along_axis(queries @ vecs.T, numbers, axis=1)).max() > 1e-4


def test_the_default_search_width_finds_the_exact_nearest_face_of_hard_queries(tmp_path):
    """Random queries, close to nobody (the hardest case for a graph index), on a real FAISS
    graph: a narrow search misses the exact nearest face of many; the default width finds
    it, and the width is set per gallery through HNSWParams."""
    rng = np.random.default_rng(4)
    vecs = unit(rng.standard_normal((5000, DIM)))
    queries = unit(rng.standard_normal((300, DIM)))
    truth = np.argmax(queries @ vecs.T, axis=1)
    index = HNSWIndex(DIM, threads=1)
    index.add(np.arange(5000), vecs)
    assert index.expansion_search == HNSWParams().expansion_search
    found = index.search(queries, 1)[0][:, 0]
    assert np.mean(found == truth) >= 0.99
    index.expansion_search = 4
    assert np.mean(index.search(queries, 1)[0][:, 0] == truth) < 0.9
    with GalleryStore(tmp_path / "g.db") as store:
        fill(store, vecs[:100, None])
        narrow = HNSWParams(expansion_search=24)
        index = ModelIndex(store, MODEL, kind="approx", hnsw=narrow, persist=False)
        index.sync()
        assert index.face_index.expansion_search == 24


@pytest.mark.parametrize("kind", ["exact", "approx"])
def test_persons_ranked_by_best_face_and_by_mean(store, kind):
    centres, vecs = identities(60, 4, seed=3)
    person_ids = fill(store, vecs)
    index = model_search(store, MODEL, kind=kind, persist=False)
    flat = vecs.reshape(-1, DIM)
    owner = np.repeat(person_ids, 4)
    for q in range(0, 60, 7):
        query = centres[q]
        scores = flat @ query
        best = {p: scores[owner == p].max() for p in person_ids}
        mean = {p: scores[owner == p].mean() for p in person_ids}
        top_max = sorted(best, key=lambda p: -best[p])[:3]
        top_mean = sorted(mean, key=lambda p: -mean[p])[:3]
        hits = index.search(query, 3, "max")
        assert [h.person_id for h in hits][:1] == top_max[:1] == [person_ids[q]]
        if kind == "exact":
            assert [h.person_id for h in hits] == top_max
            np.testing.assert_allclose(
                [h.score for h in hits], [best[p] for p in top_max], rtol=1e-5
            )
        hits = index.search(query, 3, "mean")
        assert hits[0].person_id == top_mean[0]
        np.testing.assert_allclose(hits[0].score, mean[top_mean[0]], rtol=1e-5)
        assert hits[0].face_id in {f.id for f in store.person(hits[0].person_id).faces}
    assert index.kind in (kind, "pgvector-hnsw" if kind == "approx" else f"pgvector-{kind}")


def test_embeddings_of_different_models_never_mix(store):
    centres, vecs = identities(10, 1, seed=4)
    fill(store, vecs, MODEL)
    fill(store, vecs[::-1], OTHER)  # same vectors, other model, other persons
    a = model_search(store, MODEL, kind="exact")
    b = model_search(store, OTHER, kind="exact")
    hit_a = a.search(centres[0], 1)[0]
    hit_b = b.search(centres[0], 1)[0]
    assert hit_a.person_id != hit_b.person_id
    assert store.person(hit_a.person_id).faces[0].model == MODEL
    assert store.person(hit_b.person_id).faces[0].model == OTHER
    assert len(a) == len(b) == 10


def test_an_index_sees_enrolments_and_removals_made_elsewhere(gallery_db):
    centres, vecs = identities(30, 1, seed=5)
    with open_store(gallery_db) as mine, open_store(gallery_db) as theirs:
        fill(mine, vecs[:20])
        index = model_search(mine, MODEL, kind="exact")
        assert len(index.search(centres[0], 1)) == 1 and len(index) == 20
        late = fill(theirs, vecs[20:])  # another connection, as another process would
        assert index.search(centres[25], 1)[0].person_id == late[5]
        theirs.remove_person(late[5])
        assert index.search(centres[25], 1)[0].person_id != late[5]
        assert len(index) == 29


@pytest.mark.slow
def test_the_approximate_index_is_saved_and_reconciled_with_sqlite(tmp_path, caplog):
    path = tmp_path / "g.db"
    centres, vecs = identities(400, 2, seed=6)
    with GalleryStore(path) as store:
        ids = fill(store, vecs[:300])
        index = ModelIndex(store, MODEL, kind="approx")
        assert index.search(centres[0], 1)[0].person_id == ids[0]
        assert index.save() and index.path.is_file()
        # Changes made while the saved file goes stale: SQLite stays the truth.
        more = fill(store, vecs[300:])
        store.remove_person(ids[1])
    with GalleryStore(path) as store:
        index = ModelIndex(store, MODEL, kind="approx")
        with caplog.at_level("INFO", logger="mobileface.gallery.index"):
            index.sync()
        assert "loaded" in caplog.text and "+200 -2" in caplog.text
        assert index.search(centres[350], 1)[0].person_id == more[50]
        assert index.search(centres[1], 1)[0].person_id != ids[1]
        assert len(index) == 798
        index.save()
    # A corrupt file, or one from another gallery, is rebuilt from SQLite.
    index_path = index.path
    index_path.write_bytes(b"garbage" * 100)
    with GalleryStore(path) as store:
        index = ModelIndex(store, MODEL, kind="approx")
        assert index.search(centres[350], 1)[0].person_id == more[50]
        assert len(index) == 798
    other = tmp_path / "other.db"
    with GalleryStore(other) as store:
        fill(store, vecs[:5])
        copy = ModelIndex(store, MODEL, kind="approx").path
    copy.write_bytes(index_path.read_bytes())
    with GalleryStore(other) as store:
        assert len(ModelIndex(store, MODEL, kind="approx").search(centres[0], 10)) == 5


def test_auto_switches_to_the_approximate_index_at_the_threshold(lite):
    store = lite
    _, vecs = identities(50, 1, seed=7)
    fill(store, vecs)
    index = ModelIndex(store, MODEL, approx_threshold=51, persist=False)
    index.sync()
    assert index.kind == "exact"
    index = ModelIndex(store, MODEL, approx_threshold=50, persist=False)
    index.sync()
    assert index.kind == "approx"


def test_an_empty_gallery_answers_with_no_matches(store):
    index = model_search(store, MODEL)
    assert index.search(unit(np.ones(DIM)), 5) == []
    assert len(index) == 0


def test_an_index_saved_ahead_of_a_restored_database_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "g.db"
    centres, vecs = identities(60, 1, seed=8)
    with GalleryStore(path) as store:
        fill(store, vecs[:30])
    backup = path.read_bytes()  # closed: the WAL is checkpointed into the file
    with GalleryStore(path) as store:
        gone = fill(store, vecs[30:])
        store.remove_person(gone[0])
        index = ModelIndex(store, MODEL, kind="approx")
        index.sync()
        index.save()
    for extra, message in ((10, "ahead of the database"), (40, "disagrees with the database")):
        path.write_bytes(backup)
        for leftover in tmp_path.glob("g.db-*"):
            leftover.unlink()
        with GalleryStore(path) as store:
            # Ids 31.. are other people's now: the saved index must not answer for them.
            ids = fill(store, -vecs[:extra])
            index = ModelIndex(store, MODEL, kind="approx")
            with caplog.at_level("WARNING", logger="mobileface.gallery.index"):
                hit = index.search(-vecs[3, 0], 1)[0]
            assert message in caplog.text
            assert hit.person_id == ids[3] and hit.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("verb", [["persons", "list"], ["enroll", "x", "a.jpg"]])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://face:s3cret@db.example:3306/gallery", "mysql:// is not a gallery backend"),
        # Routed to PostgreSQL: nothing listens on port 1, so it is unavailable (or psycopg is
        # missing), said plainly either way.
        ("postgresql://face:s3cret@127.0.0.1:1/gallery", "postgresql://face:***@127.0.0.1:1"),
    ],
)
def test_a_url_is_not_taken_for_a_gallery_file(verb, url, says, tmp_path, monkeypatch, capsys):
    """A URL in `--db` is never a file name: another scheme is refused clearly, postgresql://
    goes to PostgreSQL; nothing is created here and a password is never echoed."""
    from mobileface.cli import main
    from mobileface.gallery.store import refuse_urls

    monkeypatch.chdir(tmp_path)
    status = main([*verb, "--db", url])
    out = capsys.readouterr()
    assert status != 0
    assert says in out.err + out.out
    assert "s3cret" not in out.err + out.out and "face:***@" in out.err + out.out
    assert list(tmp_path.iterdir()) == []
    refuse_urls(tmp_path / "gallery.db")  # a plain path passes
