"""Enrolment and identification from real photos: the Gallery API and the CLI verbs.

Real detector (YuNet), real ONNX models: a random-init MobileFaceNet for the plumbing (it
scores the very same photo 1.0), the peer model for an accuracy check (comparison only).
Tests taking ``gallery_db`` run once on each backend: a SQLite file and a PostgreSQL database.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gallery_helpers import blank_png, cli_env, export_test_model, lfw_people, run_cli
from mobileface.errors import DataFormatError, ImageError, ModelFileError, NoFaceError
from mobileface.gallery import Gallery, ModelMismatchError, UnknownPersonError, open_store
from mobileface.gallery.pipeline import open_encoder

pytest_plugins = ["postgres_helpers"]  # fixtures: gallery_db, postgres


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> object:
    return export_test_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def encoder(model, data_dir):
    return open_encoder(model)


@pytest.fixture(scope="module")
def people(data_dir):
    return lfw_people(data_dir, 6, min_images=3)


@pytest.fixture
def gallery(gallery_db, encoder):
    with Gallery.open(gallery_db, encoder) as g:
        yield g


def test_enrolled_photos_are_found_first_with_their_score(gallery, people):
    enrolled = {}
    for name, images in people:
        result = gallery.enroll(name, images[:2])
        assert len(result.added) == 2 and result.person.name == name
        enrolled[name] = result.person.id
    for name, images in people:
        found = gallery.identify(images[1], top_k=3)
        assert [m.person_id for m in found.matches][0] == enrolled[name]
        assert found.matches[0].score == pytest.approx(1.0, abs=1e-4)
        assert len(found.matches) == 3
        assert found.matches[0].score >= found.matches[1].score >= found.matches[2].score
        assert found.face.box.shape == (4,)
        assert found.matches[0].same is (found.matches[0].score >= gallery.encoder.threshold)
    mean = gallery.identify(people[0][1][0], top_k=2, aggregate="mean")
    assert mean.matches[0].person_id == enrolled[people[0][0]]
    assert mean.matches[0].score < 1.0  # the mean over both enrolled faces


def test_an_enrolment_with_a_bad_photo_writes_nothing(gallery, people, tmp_path):
    name, images = people[0]
    blank = blank_png(tmp_path / "blank.png")
    with pytest.raises(NoFaceError, match="blank.png"):
        gallery.enroll(name, [images[0], blank])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(images[1].read_bytes()[:600])
    with pytest.raises(ImageError, match="corrupt.jpg"):
        gallery.enroll(name, [images[0], corrupt])
    assert gallery.store.count_persons() == 0 and gallery.store.count_faces() == 0
    result = gallery.enroll(name, [images[0], blank, corrupt], skip_bad=True)
    assert len(result.added) == 1 and [f[0] for f in result.failed] == [str(blank), str(corrupt)]
    with pytest.raises(NoFaceError):
        gallery.enroll(name, [blank], skip_bad=True)
    with pytest.raises(UnknownPersonError):
        gallery.enroll("", [images[0]], person_id=999)
    with pytest.raises(DataFormatError):
        gallery.enroll("", [images[0]])


def test_photos_are_kept_only_when_asked(gallery, people):
    (a, a_images), (b, b_images) = people[:2]
    plain = gallery.enroll(a, a_images[:2]).person
    kept = gallery.enroll(b, b_images[:2], keep_photos=True).person
    assert plain.photos == 0 and kept.photos == 2
    rows = gallery.store._query("SELECT person_id, data FROM photos")
    assert {r[0] for r in rows} == {kept.id}
    assert sorted(bytes(r[1]) for r in rows) == sorted(p.read_bytes() for p in b_images[:2])
    again = gallery.enroll("", a_images[:3], person_id=plain.id)
    assert len(again.added) == 1 and again.duplicates == [str(p) for p in a_images[:2]]


def test_a_gallery_moves_to_a_new_model_by_reembedding(
    tmp_path, gallery_db, model, people, data_dir
):
    db = gallery_db
    (a, a_images), (b, b_images) = people[:2]
    with Gallery.open(db, open_encoder(model)) as old:
        old.enroll(a, a_images[:2], keep_photos=True)
        old.enroll(b, b_images[:2])  # no photos kept: found again by hash under --images
    # Other weights: the model with one weight tensor changed is another model.
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(model))
    weight = graph.graph.initializer[0]
    values = onnx.numpy_helper.to_array(weight) * 1.5
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    other = tmp_path / "other.onnx"
    onnx.save(graph, str(other))
    # The same weights under another file name are the same model.
    renamed = tmp_path / "renamed.onnx"
    shutil.copy(model, renamed)
    with Gallery.open(db, open_encoder(renamed)) as same:
        assert same.model.version == same.encoder.model.version
        assert same.model.name == model.stem
        assert same.identify(a_images[0]).matches[0].name == a
    with Gallery.open(db, open_encoder(other)) as new:
        assert new.model.version != open_encoder(model).model.version
        with pytest.raises(ModelMismatchError, match="reembed"):
            new.identify(a_images[0])
        partial = new.reembed()
        assert partial.embedded == 2 and len(partial.missing) == 2
        report = new.reembed(image_dirs=[b_images[0].parent], drop_old=True)
        assert (report.embedded, report.already, report.missing) == (2, 2, [])
        assert report.dropped == 4
        assert new.identify(b_images[1]).matches[0].name == b
        assert [m.model for m in new.store.models()] == [new.model]


def test_the_peer_model_identifies_other_photos_of_enrolled_people(tmp_path, data_dir):
    peer = data_dir.parent / "peers" / "mobilefacenet-peer.onnx"
    if not peer.is_file():
        pytest.skip(f"peer model not found at {peer}")
    people = lfw_people(data_dir, 12, min_images=4)
    with Gallery.open(tmp_path / "peer.db", open_encoder(peer)) as gallery:
        for name, images in people:
            gallery.enroll(name, images[:2])
        hits = [gallery.identify(images[3]).matches[0].name == name for name, images in people]
    assert np.mean(hits) >= 0.9


def test_no_model_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MOBILEFACE_MODEL", raising=False)
    monkeypatch.setenv("MOBILEFACE_WEIGHTS_DIR", "/nonexistent")
    with pytest.raises(ModelFileError, match="--model"):
        open_encoder(None)


# -- the command line ------------------------------------------------------------------------


def test_enroll_identify_persons_from_the_command_line(gallery_db, model, people, data_dir):
    env = cli_env(data_dir)
    db = gallery_db
    (a, a_images), (b, b_images) = people[:2]
    out = run_cli("enroll", a, *a_images[:2], "--db", db, "--model", model, "--meta", "team=x",
                  env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"enrolled person 1 '{a}': 2 new face(s)" in out.stdout
    out = run_cli("enroll", b, b_images[0].parent, "--db", db, "--model", model, env=env)
    assert out.returncode == 0, out.stderr
    # Same name again: added to that person, not a second one.
    out = run_cli("enroll", a, a_images[2], "--db", db, "--model", model, "--json", env=env)
    assert out.returncode == 0, out.stderr
    person = json.loads(out.stdout)
    assert person["id"] == 1 and len(person["faces"]) == 3 and person["metadata"] == {"team": "x"}

    out = run_cli("identify", b_images[1], "--db", db, "--model", model, "--top-k", "2", env=env)
    assert out.returncode == 0, out.stderr
    first_row = out.stdout.splitlines()[2]
    assert b in first_row and "1.0000" in first_row
    out = run_cli("identify", a_images[0], b_images[0], "--db", db, "--model", model, "--json",
                  env=env)  # fmt: skip
    assert len(out.stdout.splitlines()) == 1  # one JSON document, on one line
    records = json.loads(out.stdout)
    assert [r["matches"][0]["name"] for r in records] == [a, b]

    out = run_cli("persons", "list", "--db", db, "--json")
    assert len(out.stdout.splitlines()) == 1
    listed = json.loads(out.stdout)
    assert [p["name"] for p in listed] == [a, b] and len(listed[1]["faces"]) == len(b_images)
    out = run_cli("persons", "list", "--db", db)
    assert a in out.stdout and b in out.stdout
    out = run_cli("persons", "check", "--db", db, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["integrity"] == "ok"
    out = run_cli("persons", "remove", "2", "--db", db)
    assert out.returncode == 0 and f"removed person 2 '{b}'" in out.stdout
    out = run_cli("persons", "remove", "2", "--db", db)
    assert out.returncode == 1 and "no person with id 2" in out.stderr
    out = run_cli("identify", b_images[1], "--db", db, "--model", model, "--json", env=env)
    assert all(m["person_id"] != 2 for m in json.loads(out.stdout)["matches"])
    with open_store(db) as store:
        assert store._query("SELECT count(*) FROM faces WHERE person_id = 2")[0][0] == 0


def test_persons_show_by_name_and_identify_says_who_passes(
    tmp_path, gallery_db, model, people, data_dir
):
    env = cli_env(data_dir)
    db = gallery_db
    (a, a_images), (b, b_images), (c, c_images) = people[:3]
    for name, images, extra in ((a, a_images[:2], ()), (b, b_images[:1], ()),
                                (b, b_images[1:2], ("--new",))):  # fmt: skip
        out = run_cli("enroll", name, *images, "--db", db, "--model", model, *extra, env=env)
        assert out.returncode == 0, out.stderr

    out = run_cli("persons", "show", a, "--db", db)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"person 1 '{a}': 2 faces, enrolled ")
    assert lines[1].split() == ["face", "model", "detection", "box", "x1", "y1", "x2", "y2",
                                "image", "SHA-256", "enrolled"]  # fmt: skip
    assert len(lines) == 5 and not out.stdout.lstrip().startswith("{")
    out = run_cli("persons", "show", a, "3", "--db", db, "--json")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1
    assert [p["name"] for p in json.loads(out.stdout)] == [a, b]
    out = run_cli("persons", "show", b, "--db", db)
    assert out.returncode == 1 and f"2 persons are called '{b}' (ids 2, 3)" in out.stderr
    out = run_cli("persons", "show", "Nobody Here", "--db", db)
    assert out.returncode == 1 and "no person called 'Nobody Here'" in out.stderr

    # A score no other photo reaches: the table still ranks, and says nobody passes.
    out = run_cli("identify", c_images[0], "--db", db, "--model", model, "--threshold", "0.9999",
                  env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["#", "name", "person", "score", "decision"]
    assert all(line.split()[-1] == "-" for line in lines[2:-1])
    assert lines[-1] == "no match above 0.9999"
    out = run_cli("identify", a_images[0], "--db", db, "--model", model, "--threshold", "0.9999",
                  env=env)  # fmt: skip
    lines = out.stdout.splitlines()
    assert lines[2].split()[-1] == "match" and lines[-1].startswith(f"match: {a} (person 1)")

    # A bad photo among several: the error says how to enrol the others.
    blank = blank_png(tmp_path / "blank.png")
    out = run_cli("identify", a_images[0], blank, "--db", db, "--model", model, "--json", env=env)
    assert out.returncode == 1 and len(out.stdout.splitlines()) == 1
    found, failed = json.loads(out.stdout)
    assert found["matches"][0]["name"] == a
    assert failed["error"] == "no_face" and "blank.png" in failed["message"]
    out = run_cli("enroll", c, c_images[0], blank, "--db", db, "--model", model, env=env)
    assert out.returncode == 1 and "blank.png" in out.stderr and "--skip-bad" in out.stderr
    out = run_cli("enroll", c, c_images[0], blank, "--db", db, "--model", model, "--skip-bad",
                  "--json", env=env)  # fmt: skip
    assert out.returncode == 0 and "skipped" in out.stderr and "blank.png" in out.stderr
    assert len(out.stdout.splitlines()) == 1 and json.loads(out.stdout)["name"] == c


def test_command_line_errors_name_the_problem(tmp_path, model, people, data_dir):
    env = cli_env(data_dir, MOBILEFACE_WEIGHTS_DIR=str(tmp_path / "none"))
    db = tmp_path / "cli.db"
    blank = blank_png(tmp_path / "blank.png")
    out = run_cli("enroll", "Nobody", blank, "--db", db, "--model", model, env=env)
    assert out.returncode == 1 and "blank.png" in out.stderr and "no face" in out.stderr
    out = run_cli("enroll", "Nobody", people[0][1][0], "--db", db, env=env)
    assert out.returncode == 1 and "--model" in out.stderr
    out = run_cli("identify", people[0][1][0], "--db", tmp_path / "missing.db", "--model", model,
                  env=env)  # fmt: skip
    assert out.returncode == 1 and "missing.db: no such gallery" in out.stderr
    out = run_cli("persons", "list", "--db", tmp_path / "missing.db")
    assert out.returncode == 1 and "no such gallery" in out.stderr


def test_the_gallery_verbs_do_not_import_torch(tmp_path, model, people, data_dir):
    code = (
        "import sys; from mobileface.cli import main; "
        f"main(['enroll', 'A', {str(people[0][1][0])!r}, '--db', {str(tmp_path / 'g.db')!r}, "
        f"'--model', {str(model)!r}]); "
        f"main(['identify', {str(people[0][1][0])!r}, '--db', {str(tmp_path / 'g.db')!r}, "
        f"'--model', {str(model)!r}]); "
        "import mobileface.service; print('torch' in sys.modules)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(data_dir), timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
