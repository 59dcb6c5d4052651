"""Distillation from the licensed OpenVINO teacher: the embedder, the resumable per-view cache,
mirror-matched targets, and warm starts from an ONNX export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mobileface.errors import DataFormatError, ModelFileError
from mobileface.image import load_image
from mobileface.runtime import open_embedder
from mobileface.train import Trainer, load_config
from mobileface.train.config import AugmentConfig, DatasetConfig, DistillConfig
from mobileface.train.data import FaceDataset, build_samples
from mobileface.train.distill import Distiller, _run_teacher, online_teacher, teacher_cache_path
from mobileface.train.distributed import DistInfo

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
BUNDLED_ONNX = REPO / "src" / "mobileface" / "weights" / "mobilefacenet.onnx"
TEACHER_NAME = "face-reidentification-retail-0095"


@pytest.fixture(scope="session")
def teacher_xml(data_dir: Path) -> Path:
    """Intel's OpenVINO face embedder in ../shared/teachers (skips without it or openvino)."""
    pytest.importorskip("openvino")
    path = data_dir.parent / "teachers" / TEACHER_NAME / f"{TEACHER_NAME}.xml"
    if not path.is_file():
        pytest.skip(f"the OpenVINO teacher is not at {path}")
    return path


def crops_of(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    files = [(i, f) for i, person in enumerate(people) for f in sorted(person.iterdir())]
    return np.stack([load_image(f) for _, f in files]), np.array([i for i, _ in files])


def test_openvino_teacher_separates_identities(teacher_xml: Path, tiny_folder: Path) -> None:
    embedder = open_embedder(teacher_xml)
    assert (embedder.input_size, embedder.embedding_size) == ((112, 112), 256)
    crops, labels = crops_of(tiny_folder)
    emb = embedder.embed(crops)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    similarity = emb @ emb.T
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    assert similarity[same].mean() > similarity[labels[:, None] != labels[None]].mean() + 0.4
    # Its input: the central 96 columns (the 96 x 112 template), stretched, in BGR.
    x = embedder.network_input(crops[:1])
    assert x.shape == (1, 3, 128, 128) and x.dtype == np.float32
    assert abs(float(x[0, 0].mean()) - float(crops[0, :, 8:104, 2].mean())) < 2.0  # B first


def test_openvino_model_errors_name_the_file(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    lonely = tmp_path / "model.xml"
    lonely.write_text("<net/>")
    with pytest.raises(ModelFileError, match="model.xml.*bin"):
        open_embedder(lonely)
    lonely.with_suffix(".bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError, match="model.xml: not a readable OpenVINO model"):
        open_embedder(lonely)


def test_eval_accepts_the_teacher(teacher_xml: Path, data_dir: Path, tmp_path: Path) -> None:
    """The teacher sits in the same table as our models: `mobileface eval --model X.xml`."""
    import subprocess
    import sys

    lfw = data_dir / "lfw"
    lines = (lfw / "pairsDevTest.txt").read_text().splitlines()
    same = [line for line in lines[1:] if len(line.split()) == 3][:20]
    different = [line for line in lines[1:] if len(line.split()) == 4][:20]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(["1 20", *same, *different]) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "mobileface", "eval", "--model", str(teacher_xml),
         "--pairs", str(pairs), "--images", str(lfw / "images"), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert TEACHER_NAME in json.dumps(report)
    assert report["accuracy"] > 0.9


# ------------------------------------------------------------- teacher cache
def tiny_samples(folder: Path):
    return build_samples([DatasetConfig(type="folder", path=folder)])


def test_teacher_cache_resumes_after_a_kill(teacher_xml: Path, tiny_folder: Path) -> None:
    samples = tiny_samples(tiny_folder)
    config = DistillConfig(teacher=str(teacher_xml), workers=1, cache=tiny_folder / "t.npy")
    loader = FaceDataset(samples, (112, 112), AugmentConfig(flip=0), 0)
    path = Path(config.cache)
    _run_teacher(config, loader, path, chunk=8)
    full = np.load(path)
    assert full.shape == (24, 2, 256)
    # Both views: the second is the teacher's embedding of the mirrored crop.
    mirrored = open_embedder(teacher_xml).embed(np.stack([loader.load(0)[:, ::-1]]))[0]
    np.testing.assert_allclose(full[0, 1], mirrored, rtol=1e-4, atol=1e-4)
    # A run killed after 16 rows left its partial table and count: the rerun computes only
    # the rest (the sentinel rows before the count survive) and replaces the file atomically.
    path.unlink()
    partial = path.with_name("t.partial.npy")
    stale = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=full.shape)
    stale[:] = 7.0
    stale.flush()
    del stale
    path.with_name("t.partial.json").write_text(json.dumps({"rows": 24, "done": 16}))
    _run_teacher(config, loader, path, chunk=8)
    resumed = np.load(path)
    assert np.all(resumed[:16] == 7.0)
    np.testing.assert_allclose(resumed[16:], full[16:], rtol=1e-4, atol=1e-4)
    assert not partial.exists() and not path.with_name("t.partial.json").exists()


def test_teacher_cache_key_follows_crops_and_teacher(tiny_folder: Path, tmp_path: Path) -> None:
    samples = tiny_samples(tiny_folder)
    dlib = DistillConfig(teacher="dlib")
    first = teacher_cache_path(dlib, samples, (112, 112))
    assert teacher_cache_path(dlib, samples, (112, 112)) == first
    crop = Path(samples.refs[3].path)
    stat = crop.stat()
    os.utime(crop, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a rewritten crop
    assert teacher_cache_path(dlib, samples, (112, 112)) != first
    other = tmp_path / "other.onnx"
    other.write_bytes(BUNDLED_ONNX.read_bytes())
    assert teacher_cache_path(DistillConfig(teacher=str(other)), samples, (112, 112)) != first
    with pytest.raises(DataFormatError, match="nowhere.xml: no such model file"):
        teacher_cache_path(DistillConfig(teacher=str(tmp_path / "nowhere.xml")), samples, (1, 1))


def test_mirrored_crops_get_the_mirrored_target(tiny_folder: Path, tmp_path: Path) -> None:
    samples = tiny_samples(tiny_folder)
    always = FaceDataset(samples, (112, 112), AugmentConfig(flip=1.0), 0)
    never = FaceDataset(samples, (112, 112), AugmentConfig(flip=0.0), 0)
    image, label, index, mirrored, target = always[(0, 5)]
    assert mirrored and index == 5 and label == samples.labels[5] and target.numel() == 0
    np.testing.assert_array_equal(image.numpy(), never.load(5)[:, ::-1])
    assert never[(0, 5)][3] is False
    # The distiller looks up the view the student saw.
    table = np.random.default_rng(0).normal(size=(24, 2, 8)).astype(np.float32)
    cache = tmp_path / "table.npy"
    np.save(cache, table)
    config = DistillConfig(teacher="dlib", kind="embedding", cache=cache, center=False)
    distiller = Distiller(config, samples, 8, DistInfo(0, 1, 0, torch.device("cpu")))
    target = table / np.linalg.norm(table, axis=-1, keepdims=True)
    student = torch.from_numpy(target[[2, 3], [1, 0]])  # identity projection: a perfect match
    loss = distiller(student, torch.tensor([2, 3]), torch.tensor([True, False]))
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    swapped = distiller(student, torch.tensor([2, 3]), torch.tensor([False, True]))
    assert float(swapped.detach()) > 0.1


def test_a_table_of_the_wrong_shape_is_refused(tiny_folder: Path, tmp_path: Path) -> None:
    samples = tiny_samples(tiny_folder)
    cache = tmp_path / "old.npy"
    np.save(cache, np.ones((24, 128), dtype=np.float32))  # one view: an older cache
    with pytest.raises(DataFormatError, match="old.npy: teacher embeddings of shape"):
        Distiller(
            DistillConfig(teacher="dlib", cache=cache),
            samples,
            128,
            DistInfo(0, 1, 0, torch.device("cpu")),
        )


# ------------------------------------------------------------ online teaching
def test_online_teacher_sees_the_crop_as_augmented(tiny_folder: Path, tmp_path: Path) -> None:
    """With ``distill.online`` the target is the teacher's view of the augmented crop itself,
    so colour, blur and scale augmentations are taught consistently."""
    samples = tiny_samples(tiny_folder)
    augment = AugmentConfig(flip=0.5, crop_scale=0.2, color_jitter=1.0, blur=1.0)
    dataset = FaceDataset(samples, (112, 112), augment, 0, teacher=str(BUNDLED_ONNX))
    teacher = open_embedder(BUNDLED_ONNX)
    image, _, index, _, target = dataset[(0, 7)]
    plain = dataset.load(index)
    assert not np.array_equal(image.numpy(), plain)  # augmented
    expected = teacher.embed(image.numpy()[None])[0]
    np.testing.assert_allclose(target.numpy(), expected, rtol=1e-4, atol=1e-4 * abs(expected).max())
    assert np.dot(expected, teacher.embed(plain[None])[0]) < np.dot(expected, expected)
    # The distiller centres and normalises the raw target: a student on it scores zero loss.
    table = np.random.default_rng(0).normal(size=(24, 2, 128)).astype(np.float32)
    np.save(tmp_path / "table.npy", table)
    config = DistillConfig(
        teacher=str(BUNDLED_ONNX), kind="embedding", cache=tmp_path / "table.npy", online=True
    )
    distiller = Distiller(config, samples, 128, DistInfo(0, 1, 0, torch.device("cpu")))
    raw = torch.from_numpy(np.stack([expected, -expected]))
    student = torch.nn.functional.normalize(raw - distiller.center)  # identity projection
    online_loss = distiller(student, torch.tensor([index, 0]), None, raw)
    assert float(online_loss.detach()) == pytest.approx(0.0, abs=1e-5)
    assert float(distiller(student, torch.tensor([index, 0])).detach()) > 0.1  # the table differs


def test_online_teaching_needs_the_students_crop_size(tiny_folder: Path) -> None:
    config = DistillConfig(teacher=str(BUNDLED_ONNX), online=True)
    assert online_teacher(config, (112, 112)) == str(BUNDLED_ONNX)
    assert online_teacher(DistillConfig(teacher="dlib"), (112, 112)) is None
    with pytest.raises(DataFormatError, match="takes 112x112 crops and the student 96x96"):
        online_teacher(config, (96, 96))


@pytest.mark.slow
def test_pure_online_distillation_trains(tiny_folder: Path, tmp_path: Path) -> None:
    """``loss.weight: 0`` drops the margin loss; the online teacher alone lowers the loss."""
    overrides = [
        "loss.weight=0",
        "schedule.steps=12",
        "schedule.warmup_steps=0",
        "optim.batch_size=8",
        "data.workers=1",
        "train.log_every=4",
        f"data.datasets=[{{type: folder, path: {tiny_folder}}}]",
        f"distill={{teacher: {BUNDLED_ONNX}, kind: embedding, weight: 10, online: true, "
        f"cache: {tmp_path / 'table.npy'}}}",
    ]
    Trainer(load_config(TINY, overrides), tmp_path / "run").run()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r for r in log if "loss/distill" in r]
    assert losses and all("loss/margin" not in r for r in losses)
    assert losses[-1]["loss/distill"] < losses[0]["loss/distill"]


# ------------------------------------------------------- warm start from ONNX
def test_model_init_from_an_onnx_export(tiny_folder: Path, tmp_path: Path) -> None:
    """The bundled fp32 export starts training: eval-mode outputs equal ONNX Runtime's."""
    overrides = [
        "model.name=mobilefacenet_relu",
        f"model.init={BUNDLED_ONNX}",
        "schedule.steps=1",
        "schedule.warmup_steps=0",
        "data.workers=0",
        f"data.datasets=[{{type: folder, path: {tiny_folder}}}]",
    ]
    trainer = Trainer(load_config(TINY, overrides), tmp_path / "run")
    trainer._build()
    crops = crops_of(tiny_folder)[0][:8]
    model = trainer.model.eval()
    with torch.no_grad():
        ours = model(trainer._to_input(torch.from_numpy(crops))).numpy()
    theirs = open_embedder(BUNDLED_ONNX).embed(crops)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.9999
    wrong = [*overrides[1:], "model.name=mobilefacenet"]
    with pytest.raises(DataFormatError, match="holds a mobilefacenet_relu, not a mobilefacenet"):
        Trainer(load_config(TINY, wrong), tmp_path / "x")._build()
