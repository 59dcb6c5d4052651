"""The HTTP service, as clients meet it: a real ``mobileface serve`` on 127.0.0.1, real HTTP,
the real detector and a real ONNX model, a real gallery: the tests on ``server`` run once with
a SQLite file and once with a PostgreSQL database (several servers on one database, and
database faults: test_gallery_postgres.py)."""

from __future__ import annotations

import io
import sqlite3

import httpx
import numpy as np
import pytest

from gallery_helpers import Server, blank_png, export_test_model, lfw_people, run_cli
from mobileface.gallery import open_store

pytest_plugins = ["postgres_helpers"]  # fixtures: postgres

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_test_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def people(data_dir):
    return lfw_people(data_dir, 6, min_images=3)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory, model, data_dir):
    root = tmp_path_factory.mktemp("service")
    if request.param == "sqlite":
        db = root / "gallery.db"
    else:
        db = request.getfixturevalue("postgres").create_database()
    with Server(db, model, data_dir, log=root / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def strict(tmp_path_factory, model, data_dir):
    """A server that wants a key even on loopback, with small size limits."""
    root = tmp_path_factory.mktemp("strict")
    with Server(
        root / "gallery.db", model, data_dir,
        "--require-auth", "--max-body-mb", "0.1", "--max-pixels", "50000", "--max-images", "2",
        env={"MOBILEFACE_API_KEY": API_KEY},
    ) as running:  # fmt: skip
        yield running


def photo(path):
    return (path.name, path.read_bytes(), "image/jpeg")


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["code"], body["detail"]


# -- health, docs ------------------------------------------------------------------------------


def test_health_and_openapi_docs(client):
    from mobileface import __version__

    assert client.get("/healthz").json() == {"status": "ok", "version": __version__}
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/verify", "post"),
        ("/v1/embed", "post"),
        ("/v1/persons", "post"),
        ("/v1/persons", "get"),
        ("/v1/persons/{person_id}", "get"),
        ("/v1/persons/{person_id}", "delete"),
        ("/v1/identify", "post"),
        ("/healthz", "get"),
    ]:
        assert method in paths[path], (path, method)
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<title>mobileface</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/nope.js").status_code == 404


def test_the_page_has_a_favicon(client):
    from PIL import Image

    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    with Image.open(io.BytesIO(icon.content)) as decoded:
        assert decoded.format == "ICO" and (32, 32) in decoded.info["sizes"]
    svg = client.get("/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg")
    assert 'rel="icon" href="/favicon.svg"' in client.get("/").text


# -- 1:1 and embeddings --------------------------------------------------------------------


def test_verify_scores_two_photos(client, people, model):
    (_, a_images), (_, b_images) = people[:2]
    same = client.post(
        "/v1/verify", files={"image_a": photo(a_images[0]), "image_b": photo(a_images[0])}
    ).json()
    assert same["score"] == pytest.approx(1.0, abs=1e-4) and same["same"] is True
    assert same["threshold"] == pytest.approx(0.35)
    assert len(same["faces"]["image_a"]["box"]) == 4
    r = client.post(
        "/v1/verify", files={"image_a": photo(a_images[0]), "image_b": photo(b_images[0])}
    )
    assert r.status_code == 200
    # The same score as the runtime's own verifier.
    from mobileface.runtime import FaceVerifier, open_embedder

    local = FaceVerifier(open_embedder(model)).verify(a_images[0], b_images[0])
    assert r.json()["score"] == pytest.approx(local.score, abs=1e-5)


def test_verify_shows_the_faces_found_and_on_request_the_crops(client, people):
    import base64

    from PIL import Image

    (_, a_images), (_, b_images) = people[:2]
    files = {"image_a": photo(a_images[0]), "image_b": photo(b_images[0])}
    plain = client.post("/v1/verify", files=files).json()
    assert plain["crops"] is None  # the JSON stays small unless asked
    for face in plain["faces"].values():
        x1, y1, x2, y2 = face["box"]
        assert len(face["landmarks"]) == 5
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face["landmarks"])
    shown = client.post("/v1/verify", files=files, data={"crops": "true"}).json()
    assert shown["score"] == plain["score"] and shown["faces"] == plain["faces"]
    for key in ("image_a", "image_b"):
        head, _, data = shown["crops"][key].partition(",")
        assert head == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as crop:
            assert (crop.format, crop.size, crop.mode) == ("PNG", (112, 112), "RGB")


def test_embed_returns_a_unit_embedding_and_the_face(client, people):
    r = client.post("/v1/embed", files={"image": photo(people[0][1][0])})
    assert r.status_code == 200
    body = r.json()
    assert body["dim"] == 128 and len(body["embedding"]) == 128
    assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-5)
    x1, y1, x2, y2 = body["face"]["box"]
    assert 0 <= x1 < x2 <= 250 and 0 <= y1 < y2 <= 250
    assert len(body["face"]["landmarks"]) == 5


# -- persons and 1:N -----------------------------------------------------------------------


def test_enrol_list_get_identify_delete(client, people, server):
    ids = {}
    for name, images in people[:4]:
        r = client.post(
            "/v1/persons",
            data={"name": name, "metadata": '{"source": "lfw"}'},
            files=[("images", photo(images[0])), ("images", photo(images[1]))],
        )
        assert r.status_code == 201, r.text
        person = r.json()
        assert person["name"] == name and len(person["faces"]) == 2 and person["photos"] == 0
        assert person["metadata"] == {"source": "lfw"} and len(person["added"]) == 2
        ids[name] = person["id"]
    listing = client.get("/v1/persons", params={"limit": 2}).json()
    assert listing["total"] >= 4 and len(listing["persons"]) == 2
    name, images = people[2]
    assert client.get(f"/v1/persons/{ids[name]}").json()["name"] == name

    r = client.post("/v1/identify", files={"image": photo(images[1])}, data={"top_k": "3"})
    assert r.status_code == 200
    matches = r.json()["matches"]
    assert len(matches) == 3 and matches[0]["person_id"] == ids[name]
    assert matches[0]["name"] == name and matches[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)

    more = client.post(f"/v1/persons/{ids[name]}/faces", files={"images": photo(images[2])})
    assert more.status_code == 200 and len(more.json()["faces"]) == 3

    assert client.delete(f"/v1/persons/{ids[name]}").status_code == 204
    assert error_of(client.get(f"/v1/persons/{ids[name]}"))[:2] == (404, "unknown_person")
    assert error_of(client.delete(f"/v1/persons/{ids[name]}"))[:2] == (404, "unknown_person")
    after = client.post("/v1/identify", files={"image": photo(images[1])}).json()["matches"]
    assert ids[name] not in [m["person_id"] for m in after]
    # Nothing of the uploads was stored: no photos, just hashes.
    with open_store(server.db) as store:
        assert store.count_photos() == 0


def test_photos_are_stored_only_when_asked(client, people, server):
    name, images = people[4]
    r = client.post(
        "/v1/persons",
        data={"name": name, "keep_photos": "true"},
        files=[("images", photo(images[0]))],
    )
    assert r.status_code == 201 and r.json()["photos"] == 1
    sha = r.json()["faces"][0]["image_sha256"]
    with open_store(server.db) as store:
        assert store.photo(r.json()["id"], sha) == images[0].read_bytes()


def test_bad_input_gets_a_clear_4xx(client, people, tmp_path):
    good = photo(people[0][1][0])
    blank = blank_png(tmp_path / "blank.png")
    corrupt = people[0][1][0].read_bytes()[:700]

    status, code, detail = error_of(
        client.post("/v1/identify", files={"image": ("blank.png", blank.read_bytes())})
    )
    assert (status, code) == (422, "no_face") and "blank.png" in detail
    status, code, detail = error_of(client.post("/v1/embed", files={"image": ("cut.jpg", corrupt)}))
    assert (status, code) == (400, "bad_image") and "cut.jpg" in detail
    status, code, detail = error_of(
        client.post("/v1/embed", files={"image": ("notes.txt", b"hello")})
    )
    assert (status, code) == (400, "bad_image") and "not an image" in detail
    status, code, detail = error_of(client.post("/v1/verify", files={"image_a": good}))
    assert (status, code) == (422, "invalid_request") and "image_b" in detail
    status, code, detail = error_of(client.post("/v1/persons", files={"images": good}))
    assert (status, code) == (422, "invalid_request") and "name" in detail
    status, code, detail = error_of(client.post("/v1/persons", data={"name": "x"}))
    assert (status, code) == (400, "bad_request") and "images" in detail
    status, code, _ = error_of(
        client.post("/v1/persons", data={"name": "x", "metadata": "[1]"}, files={"images": good})
    )
    assert (status, code) == (400, "bad_request")
    # One photo without a face fails the whole enrolment: nobody is half-enrolled.
    before = client.get("/v1/persons").json()["total"]
    r = client.post(
        "/v1/persons",
        data={"name": "Half"},
        files=[("images", good), ("images", ("blank.png", blank.read_bytes()))],
    )
    assert error_of(r)[:2] == (422, "no_face")
    assert client.get("/v1/persons").json()["total"] == before
    assert error_of(client.get("/v1/persons/123456"))[:2] == (404, "unknown_person")
    assert error_of(client.get("/v1/persons/abc"))[:2] == (422, "invalid_request")
    status, code, _ = error_of(
        client.post("/v1/identify", files={"image": good}, data={"top_k": "0"})
    )
    assert (status, code) == (422, "invalid_request")
    status, code, _ = error_of(
        client.post("/v1/identify", files={"image": good}, data={"top_k": "1000"})
    )
    assert (status, code) == (400, "bad_request")


# -- authentication and limits -------------------------------------------------------------


def test_api_key_is_required_when_asked(strict, people):
    with httpx.Client(base_url=strict.url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200  # probes need no key
        assert c.get("/").status_code == 200  # nor does the page (its API calls do)
        r = c.get("/v1/persons")
        assert error_of(r)[:2] == (401, "unauthorized") and "X-API-Key" in r.json()["detail"]
        assert "www-authenticate" in r.headers
        assert c.get("/v1/persons", headers={"X-API-Key": "wrong" * 5}).status_code == 401
        assert c.get("/v1/persons", headers={"X-API-Key": API_KEY}).status_code == 200
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        assert c.get("/v1/info", headers=bearer).json()["auth"] is True
        r = c.post("/v1/embed", files={"image": photo(people[0][1][0])})
        assert r.status_code == 401


def test_size_and_pixel_limits(strict, people):
    key = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=strict.url, timeout=60, headers=key) as c:
        # 62,500-pixel LFW photos exceed the 50,000-pixel limit: refused before decoding.
        status, code, detail = error_of(
            c.post("/v1/embed", files={"image": photo(people[0][1][0])})
        )
        assert (status, code) == (413, "image_too_large") and "50,000" in detail
        big = io.BytesIO(b"x" * 200_000)
        status, code, detail = error_of(c.post("/v1/embed", files={"image": ("big.jpg", big)}))
        assert (status, code) == (413, "request_too_large") and "limit" in detail

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(50):
                yield b"y" * 10_000

        r = c.post("/v1/embed", content=chunks(), headers={"Content-Type": "image/jpeg"})
        assert error_of(r)[:2] == (413, "request_too_large")
        small = ("a.jpg", b"z" * 100)
        r = c.post("/v1/persons", data={"name": "x"}, files=[("images", small)] * 3)
        assert error_of(r)[:2] == (400, "bad_request") and "at most 2" in r.json()["detail"]


def test_serving_off_loopback_without_a_key_is_refused(tmp_path, model, data_dir):
    from gallery_helpers import cli_env

    out = run_cli(
        "serve", "--db", tmp_path / "g.db", "--model", model, "--host", "0.0.0.0",
        env=cli_env(data_dir),
    )  # fmt: skip
    assert out.returncode == 1
    assert "not loopback" in out.stderr and "MOBILEFACE_API_KEY" in out.stderr
    assert not (tmp_path / "g.db").exists()


# -- reliability ---------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_identify_requests_agree(client, people):
    from concurrent.futures import ThreadPoolExecutor

    for name, images in people[5:6]:
        client.post("/v1/persons", data={"name": name}, files={"images": photo(images[0])})
    probes = [images[1] for _, images in people[:6]]
    expected = {}
    for probe in probes:
        matches = client.post("/v1/identify", files={"image": photo(probe)}).json()["matches"]
        expected[probe.name] = [(m["person_id"], m["score"]) for m in matches]

    def worker(k: int) -> list[tuple[str, int, list]]:
        out = []
        with httpx.Client(base_url=client.base_url, timeout=120) as own:
            for i in range(25):
                probe = probes[(k + i) % len(probes)]
                r = own.post("/v1/identify", files={"image": photo(probe)})
                body = r.json()
                got = [(m["person_id"], m["score"]) for m in body.get("matches", [])]
                out.append((probe.name, r.status_code, got))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [row for rows in pool.map(worker, range(8)) for row in rows]
    assert len(results) == 200
    assert [r for r in results if r[1] != 200] == []
    assert all(got == expected[name] for name, _, got in results)


@pytest.mark.slow
def test_enrolments_acknowledged_before_a_sigkill_survive_it(tmp_path, model, people, data_dir):
    import threading
    import time

    db = tmp_path / "killed.db"
    server = Server(db, model, data_dir).start()
    acknowledged: list[tuple[int, str, int]] = []
    interrupted: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def stream(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                name, images = people[(k + i) % len(people)]
                files = [("images", photo(images[j])) for j in range(2)]
                try:
                    r = c.post("/v1/persons", data={"name": f"{name} #{k}-{i}"}, files=files)
                except httpx.HTTPError:
                    interrupted.append(k)  # the server died mid-request: not acknowledged
                    return
                if r.status_code == 201:
                    with lock:
                        acknowledged.append((r.json()["id"], r.json()["name"], 2))
                i += 1

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL, requests in flight
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acknowledged) >= 12, server.output()
    assert interrupted, "no request was in flight when the server was killed"

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = dict(con.execute("SELECT id, name FROM persons").fetchall())
    counts = dict(con.execute("SELECT person_id, count(*) FROM faces GROUP BY person_id"))
    con.close()
    for person_id, name, faces in acknowledged:
        assert rows.get(person_id) == name
        assert counts.get(person_id) == faces
    assert all(counts.get(pid) == 2 for pid in rows), "a person without all their faces"

    with Server(db, model, data_dir) as again, httpx.Client(base_url=again.url) as c:
        assert c.get("/v1/persons").json()["total"] == len(rows)
        name, images = people[0]
        best = c.post("/v1/identify", files={"image": photo(images[0])}).json()["matches"][0]
        assert best["name"].startswith(name) and best["score"] == pytest.approx(1.0, abs=1e-4)


def test_loopback_rule_and_api_key_loading(tmp_path, monkeypatch):
    from mobileface.errors import DataFormatError
    from mobileface.service import ServiceConfig, is_loopback, load_api_keys

    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host), host
    assert not ServiceConfig(db=tmp_path / "g.db").auth_required
    assert ServiceConfig(db=tmp_path / "g.db", host="0.0.0.0", api_keys=(API_KEY,)).auth_required
    assert not ServiceConfig(db=tmp_path / "g.db", host="0.0.0.0", require_auth=False).auth_required
    with pytest.raises(DataFormatError, match="not loopback"):
        ServiceConfig(db=tmp_path / "g.db", host="0.0.0.0").check()

    monkeypatch.setenv("MOBILEFACE_API_KEY", f"{API_KEY}, second-key-0123456789")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# comment\nfile-key-0123456789abc\n\n{API_KEY}\n")
    assert load_api_keys(keys_file) == ("file-key-0123456789abc", API_KEY, "second-key-0123456789")
    monkeypatch.setenv("MOBILEFACE_API_KEY", "short")
    with pytest.raises(DataFormatError, match="16 characters"):
        load_api_keys()
    keys_file.write_text("# nothing\n")
    monkeypatch.delenv("MOBILEFACE_API_KEY")
    with pytest.raises(DataFormatError, match="no API key"):
        load_api_keys(keys_file)
