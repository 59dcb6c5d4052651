"""The PostgreSQL backend on a real server (pgvector, a throwaway cluster on 127.0.0.1): its
schema, search in the database, copying galleries between backends, faults of the database,
and several ``mobileface serve`` processes sharing one database. Nothing is mocked.

Behaviour shared with SQLite is tested on both backends in test_gallery_store.py,
test_gallery.py and test_service.py; this file holds what is particular to PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from gallery_helpers import Server, cli_env, export_test_model, lfw_people, run_cli
from mobileface.errors import DataFormatError
from mobileface.gallery import (
    DatabaseUnavailableError,
    GalleryStore,
    ModelKey,
    NewFace,
    copy_gallery,
    open_store,
)
from mobileface.gallery.postgres import SCHEMA_VERSION

pytest_plugins = ["postgres_helpers"]  # fixtures: postgres

MODEL = ModelKey("synthetic", "0123456789abcdef")
OTHER = ModelKey("synthetic", "fedcba9876543210")
DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# -- schema ----------------------------------------------------------------------------------


pytestmark = pytest.mark.slow  # every test here starts or uses a PostgreSQL server


def test_the_schema_is_versioned_and_refuses_what_it_does_not_know(postgres):
    url = postgres.create_database()
    with pytest.raises(DataFormatError, match="no gallery in this database"):
        open_store(url, create=False)
    # Several processes opening a new database at once: one creates the schema.
    stores, errors = [], []

    def open_one() -> None:
        try:
            stores.append(open_store(url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({s.gallery_id for s in stores}) == 1
    store = stores[0]
    assert store.schema_version == SCHEMA_VERSION and store.integrity_check() == "ok"
    store._query("UPDATE meta SET value = %s WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    for s in stores:
        s.close()
    with pytest.raises(DataFormatError, match="newer than this mobileface"):
        open_store(url)
    # A database that holds someone else's tables is not taken over.
    foreign = postgres.create_database()
    import psycopg

    with psycopg.connect(foreign, autocommit=True) as conn:
        conn.execute("CREATE TABLE persons (id int)")
    with pytest.raises(DataFormatError, match="not a mobileface gallery"):
        open_store(foreign)


def test_models_of_other_sizes_never_mix_and_approx_search_uses_hnsw(postgres):
    rng = np.random.default_rng(0)
    vecs = unit(rng.standard_normal((300, DIM)))
    with open_store(postgres.create_database()) as store:
        for i, v in enumerate(vecs):
            store.enroll(f"p{i}", [NewFace(v, f"h{i}")], MODEL)
        person, _, _ = store.enroll("q", [NewFace(unit(np.ones(64)), "wide")], OTHER)
        with pytest.raises(DataFormatError, match="32-d embeddings in this gallery, not 64-d"):
            store.enroll("r", [NewFace(unit(np.ones(64)), "x")], MODEL)
        assert store.count_persons() == 301  # the refused enrolment left nothing
        assert "faces_hnsw_" in store.explain_nearest(MODEL, vecs[0], kind="approx")
        assert "faces_hnsw_" not in store.explain_nearest(MODEL, vecs[0], kind="exact")
        for kind in ("approx", "exact", "auto"):
            hits = store.nearest_faces(MODEL, vecs[7], 5, kind=kind)
            assert hits[0][1] == 8 and hits[0][2] == pytest.approx(1.0, abs=1e-5)
        # Widening past ef_search (pgvector's iterative scan) still finds every face.
        assert len(store.nearest_faces(MODEL, vecs[0], 300, kind="approx", ef_search=10)) == 300
        assert store.nearest_faces(OTHER, unit(np.ones(64)), 5)[0][1] == person.id
        assert {m.model: m.dim for m in store.models()} == {MODEL: DIM, OTHER: 64}
        assert store.integrity_check() == "ok"


# -- copying between backends ------------------------------------------------------------------


def fill_rich(store, seed: int = 0) -> dict[int, np.ndarray]:
    """Two models, metadata, boxes, kept photos, and deleted persons (gaps in the ids)."""
    rng = np.random.default_rng(seed)
    vectors = {}
    for i in range(12):
        faces = [
            NewFace(unit(rng.standard_normal(DIM)), f"{i}-{j}", box=[i, j, 50.5, 60.25],
                    det_score=0.9, photo=b"jpeg %d %d" % (i, j) if i % 3 == 0 else None)
            for j in range(2)
        ]  # fmt: skip
        person, ids, _ = store.enroll(f"person {i}", faces, MODEL, metadata={"n": i, "tag": "x"})
        vectors.update(zip(ids, (f.embedding for f in faces), strict=True))
        if i % 4 == 0:
            _, ids, _ = store.enroll("", [NewFace(unit(np.ones(DIM)), f"{i}-o")], OTHER,
                                     person_id=person.id)  # fmt: skip
            vectors[ids[0]] = unit(np.ones(DIM))
    store.remove_person(12)  # the newest: the copy must not hand its id out again
    store.remove_person(5)
    return vectors


def snapshot(store) -> dict:
    people = [p.to_dict() for p in store.persons()]
    embeddings = {}
    for model in (MODEL, OTHER):
        ids, owners, vecs = store.embeddings(model)
        embeddings[str(model)] = (ids.tolist(), owners.tolist(), vecs.tobytes())
    photos = {
        (p["id"], f["image_sha256"]): store.photo(p["id"], f["image_sha256"])
        for p in people
        for f in p["faces"]
    }
    return {"persons": people, "embeddings": embeddings, "photos": photos}


def test_a_gallery_moves_to_postgres_and_back_losing_nothing(tmp_path, postgres, data_dir):
    source = tmp_path / "source.db"
    with GalleryStore(source) as store:
        fill_rich(store)
        before = snapshot(store)
        high_water = store.next_ids()
    assert len(before["persons"]) == 10 and len(before["photos"]) == 22
    url = postgres.create_database(password="s3cret-pw")
    env = cli_env(data_dir)
    out = run_cli("persons", "copy", "--db", source, "--to", url, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("copied 10 persons, 22 faces (synthetic@0123456789abcdef: 20, ")
    assert "and 8 photos" in out.stdout and "counts checked" in out.stdout
    assert "s3cret-pw" not in out.stdout + out.stderr and "mobileface:***@" in out.stdout
    back = tmp_path / "back.db"
    out = run_cli("persons", "copy", "--db", url, "--to", back, "--json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["persons"] == 10 and report["photos"] == 8 and report["checked"] is True
    assert report["faces"] == {str(MODEL): 20, str(OTHER): 2}
    with open_store(url) as pg, GalleryStore(back) as lite:
        for store in (pg, lite):
            assert snapshot(store) == before
            assert store.next_ids() == high_water
            assert store.integrity_check() == "ok"
            person, _, _ = store.enroll("new", [NewFace(unit(np.ones(DIM)), "n")], MODEL)
            assert person.id == high_water["persons"] + 1
        # Into a gallery that holds persons: refused, and it is left as it was.
        with pytest.raises(DataFormatError, match="already holds"):
            copy_gallery(lite, pg)
    out = run_cli("persons", "copy", "--db", back, "--to", url, env=env)
    assert out.returncode == 1 and "already holds" in out.stderr and "s3cret-pw" not in out.stderr


# -- faults of the database -------------------------------------------------------------------


def test_a_database_restart_or_outage_is_a_clear_error_and_heals_by_itself(postgres):
    url = postgres.create_database(password="s3cret-pw")
    with open_store(url) as store:
        store.enroll("Ada", [NewFace(unit(np.ones(DIM)), "a")], MODEL)
        postgres.restart()  # every pooled connection is cut
        assert store.count_persons() == 1  # checked, replaced: no error reaches the caller
        postgres.stop()
        try:
            t0 = time.monotonic()
            with pytest.raises(DatabaseUnavailableError) as caught:
                store.search_index(MODEL).search(unit(np.ones(DIM)), 1)
            assert time.monotonic() - t0 < 10
            message = str(caught.value)
            assert "unavailable" in message and "Connection refused" in message
            assert "s3cret-pw" not in message and "mobileface:***@" in message
        finally:
            postgres.start()
        assert store.search_index(MODEL).search(unit(np.ones(DIM)), 1)[0].person_id == 1
        store.enroll("Bob", [NewFace(unit(-np.ones(DIM)), "b")], MODEL)
        assert store.count_persons() == 2


# -- several service processes on one database --------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_test_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory, model, data_dir, postgres):
    """Two ``mobileface serve`` processes on one PostgreSQL gallery."""
    root = tmp_path_factory.mktemp("pair")
    url = postgres.create_database(password="s3cret-pw")
    servers = [Server(url, model, data_dir, log=root / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield url, servers
    finally:
        for server in servers:
            server.stop()


def photo(path):
    return (path.name, path.read_bytes(), "image/jpeg")


@pytest.mark.slow
def test_two_servers_share_one_gallery_at_once(pair, data_dir):
    import httpx

    url, servers = pair
    people = lfw_people(data_dir, 40, min_images=2)
    photos = [(name, image) for name, images in people for image in images[:2]][:80]
    errors: list[str] = []
    done = []

    def client(k: int) -> None:
        enrol_at, ask_at = servers[k % 2].url, servers[(k + 1) % 2].url
        with httpx.Client(timeout=120) as c:
            for i in range(k, len(photos), 8):
                name, image = photos[i]
                r = c.post(f"{enrol_at}/v1/persons", data={"name": f"{name} {i}"},
                           files={"images": photo(image)})  # fmt: skip
                if r.status_code != 201:
                    errors.append(f"enrol {r.status_code} {r.text}")
                    continue
                enrolled = r.json()["id"]
                r = c.post(f"{ask_at}/v1/identify", files={"image": photo(image)})
                if r.status_code != 200:
                    errors.append(f"identify {r.status_code} {r.text}")
                    continue
                best = r.json()["matches"][0]
                if best["person_id"] != enrolled or best["score"] < 0.9999:
                    errors.append(f"enrolled {enrolled} at {enrol_at}, {ask_at} found {best}")
                done.append(i)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(done) == len(photos)
    for server in servers:
        info = httpx.get(f"{server.url}/v1/info").json()
        assert info["persons"] == len(photos) and info["index"] == "pgvector-auto"
        assert "s3cret-pw" not in server.output()


def stream_enrolments(url: str, people, k: int, stop: threading.Event, acknowledged, failures):
    """Enrol persons (two photos each) until ``stop``; acknowledged ones are recorded."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as c:
        i = 0
        while not stop.is_set():
            name, images = people[(k + i) % len(people)]
            files = [("images", photo(images[j])) for j in range(2)]
            try:
                r = c.post("/v1/persons", data={"name": f"{name} #{k}-{i}"}, files=files)
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)  # the server died mid-request
                return
            if r.status_code == 201:
                acknowledged.append((r.json()["id"], r.json()["name"]))
            else:
                failures.append(f"{r.status_code} {r.json().get('code')}")
                time.sleep(0.1)
            i += 1


def check_nothing_lost(url: str, acknowledged) -> None:
    """Every acknowledged enrolment is there, and every streamed one (acknowledged or not) is
    whole: both faces or no person at all."""
    with open_store(url) as store:
        assert store.integrity_check() == "ok"
        people = {p.id: p for p in store.persons()}
    for person_id, name in acknowledged:
        assert person_id in people and people[person_id].name == name
    streamed = [p for p in people.values() if " #" in p.name]
    assert all(len(p.faces) == 2 for p in streamed), "a person without all their faces"


@pytest.mark.slow
def test_a_postgres_restart_mid_stream_loses_nothing_acknowledged(pair, data_dir, postgres):
    import httpx

    url, servers = pair
    people = lfw_people(data_dir, 6, min_images=3)
    acknowledged: list = []
    failures: list = []
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=stream_enrolments,
            args=(servers[k % 2].url, people, k, stop, acknowledged, failures),
        )
        for k in range(4)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = len(acknowledged)
    postgres.restart()  # pg_ctl restart -m fast, enrolments in flight on both servers
    deadline = time.monotonic() + 60
    while len(acknowledged) < before + 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acknowledged) >= before + 8, "the service did not recover from the restart"
    assert all(f.startswith("503 database_unavailable") for f in failures), failures
    check_nothing_lost(url, acknowledged)

    # The database down for a while: a clear 503 (and a failing health check), then back.
    postgres.stop()
    try:
        with httpx.Client(timeout=30) as c:
            r = c.post(f"{servers[0].url}/v1/identify", files={"image": photo(people[0][1][0])})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["code"] == "database_unavailable"
            assert "s3cret-pw" not in r.text and "mobileface:***@" in r.text
            health = c.get(f"{servers[1].url}/healthz")
            assert health.status_code == 503 and "unavailable" in health.json()["detail"]
    finally:
        postgres.start()
    for server in servers:
        r = httpx.post(f"{server.url}/v1/identify", files={"image": photo(people[0][1][0])},
                       timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["matches"][0]["score"] > 0.9999
        assert "s3cret-pw" not in server.output()


@pytest.mark.slow
def test_a_server_killed_mid_stream_loses_nothing_acknowledged(pair, data_dir):
    import httpx

    url, (victim, survivor) = pair
    people = lfw_people(data_dir, 6, min_images=3)
    acknowledged: list = []
    failures: list = []
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=stream_enrolments,
            args=((victim, survivor)[k % 2].url, people, k, stop, acknowledged, failures),
        )
        for k in range(4)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()  # SIGKILL, requests in flight
    time.sleep(1.0)  # the survivor's clients go on meanwhile
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acknowledged) >= 12 and failures, "no request was in flight at the kill"
    check_nothing_lost(url, acknowledged)
    with open_store(url) as store:
        total = store.count_persons()
    r = httpx.get(f"{survivor.url}/v1/persons", params={"limit": 1}, timeout=60)
    assert r.json()["total"] == total
