"""The training engine: configs, schedules, sampling, and real runs on the shared data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mobileface.errors import DataFormatError
from mobileface.models import create_model
from mobileface.train import Trainer, load_config
from mobileface.train.config import ScheduleConfig, read_recipe
from mobileface.train.data import StepSampler
from mobileface.train.engine import split_weight_decay
from mobileface.train.schedule import lr_factor

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ configs
def test_every_shipped_config_is_valid(monkeypatch) -> None:
    monkeypatch.setenv("MOBILEFACE_MS1M", "/datasets/ms1m")
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path)
        create_model(config.model.name, **config.model.kwargs)


def test_mobilefacenet_recipe_is_the_papers() -> None:
    os.environ.setdefault("MOBILEFACE_MS1M", "/datasets/ms1m")
    config = load_config(REPO / "configs" / "mobilefacenet_ms1m.yaml")
    assert config.optim.lr == 0.1 and config.optim.momentum == 0.9
    assert config.optim.weight_decay == 4e-5 and config.optim.head_weight_decay == 4e-4
    assert config.schedule.milestones == [36000, 52000, 58000]
    assert config.optim.batch_size == 512
    assert (config.loss.type, config.loss.s, config.loss.m2) == ("arcface", 64, 0.5)


def test_overrides_are_validated_like_the_file() -> None:
    config = load_config(
        TINY, ["optim.lr=0.01", "schedule.steps=7", "data.datasets.0.min_images=3"]
    )
    assert config.optim.lr == 0.01 and config.schedule.steps == 7
    assert config.data.datasets[0].min_images == 3
    with pytest.raises(DataFormatError, match="optim.lr"):
        load_config(TINY, ["optim.lr=-1"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: {datasets: []}\nschedule: {steps: 5}", "data.datasets"),
        ("data: {datasets: [{path: x}]}\nschedule: {steps: 5}\nmodle: {}", "modle"),
        ("data: {datasets: [{path: x}]}\nschedule: {steps: 5, warmup_steps: 9}", "warmup_steps"),
        ("data: {datasets: [{path: x}]}\nschedule: {steps: 5, milestones: [9]}", "milestones"),
        ("data: {datasets: [{path: x}]}\nschedule: {steps: 5}\nloss: {type: magic}", "loss.type"),
        ("[1, 2", "not valid YAML"),
        ("- a\n- b", "mapping"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        load_config(write_config(tmp_path, text))


def test_a_config_can_start_from_a_base_config(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.yaml").write_text(
        "data: {datasets: [{path: crops}]}\n"
        "optim: {lr: 0.1, momentum: 0.8}\n"
        "schedule: {steps: 50, warmup_steps: 5}\n"
    )
    stage = tmp_path / "stage2.yaml"
    stage.write_text(
        "base: recipes/base.yaml\nmodel: {init: runs/first.pt}\n"
        "optim: {lr: 0.02}\nschedule: {steps: 80}\n"
    )
    config = load_config(stage, ["schedule.warmup_steps=0"])
    assert (config.optim.lr, config.optim.momentum) == (0.02, 0.8)  # sections merge by key
    assert (config.schedule.steps, config.schedule.warmup_steps) == (80, 0)
    # Each file's relative paths are relative to that file.
    assert config.data.datasets[0].path.resolve() == (tmp_path / "recipes" / "crops").resolve()
    assert config.model.init.resolve() == (tmp_path / "runs" / "first.pt").resolve()
    recipe = read_recipe(stage, resolve=False)  # as written, for model cards
    assert (
        recipe["model"]["init"] == "runs/first.pt"
        and recipe["data"]["datasets"][0]["path"] == "crops"
    )
    (tmp_path / "recipes" / "base.yaml").write_text("base: ../stage2.yaml\n")
    with pytest.raises(DataFormatError, match="loops back"):
        load_config(stage)
    stage.write_text("base: missing.yaml\n")
    with pytest.raises(DataFormatError, match="missing.yaml: no such config file"):
        load_config(stage)


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "data: {datasets: [{path: nowhere}]}\nschedule: {steps: 5}")
    trainer = Trainer(load_config(path), tmp_path / "out")
    with pytest.raises(DataFormatError, match="nowhere: no such file"):
        trainer.run()


# ------------------------------------------------------- schedule and order
def test_step_schedule_with_warmup() -> None:
    config = ScheduleConfig(type="step", steps=100, warmup_steps=10, milestones=[50, 80])
    factors = [lr_factor(s, config, 0.1) for s in (0, 9, 10, 49, 50, 79, 80, 99)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_cosine_and_poly_schedules_end_at_the_floor() -> None:
    cosine = ScheduleConfig(type="cosine", steps=100, min_lr=0.001)
    poly = ScheduleConfig(type="poly", steps=100, power=2)
    assert lr_factor(0, cosine, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, cosine, 0.1) == pytest.approx(0.01)
    assert lr_factor(50, poly, 0.1) == pytest.approx(0.25)


def test_sampler_is_a_function_of_seed_and_step() -> None:
    full = StepSampler(100, 8, seed=3)
    batches = [b for b, _ in zip(full, range(30), strict=False)]
    resumed = StepSampler(100, 8, seed=3, start_step=17)
    assert [b for b, _ in zip(resumed, range(13), strict=False)] == batches[17:]
    epoch0 = [i for b in batches[:12] for _, i in b]
    assert len(set(epoch0)) == 96  # an epoch visits distinct samples, tail dropped


def test_ranks_split_each_global_batch() -> None:
    ranks = [StepSampler(64, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    first = [next(iter(s)) for s in ranks]
    assert not {i for _, i in first[0]} & {i for _, i in first[1]}


def test_layers_after_gdconv_get_the_head_weight_decay() -> None:
    model = create_model("mobilefacenet")
    body, after = split_weight_decay(model)
    assert sum(p.numel() for p in after) == 512 * 128 + 2 * 128  # linear 1x1 conv and its BN
    assert len(body) + len(after) == len(list(model.parameters()))


# ---------------------------------------------------------------- real runs
def tiny_overrides(steps: int, **extra: str) -> list[str]:
    base = {
        "schedule.steps": str(steps),
        "schedule.warmup_steps": "0",
        "train.log_every": "1",
        "train.checkpoint_every": "4",
        "data.workers": "0",
        "optim.batch_size": "16",
        "model.kwargs": "{input_size: [64, 64]}",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_training_reduces_the_loss(data_dir: Path, tmp_path: Path) -> None:
    extra = {"schedule.type": "constant", "optim.lr": "0.1", "loss.type": "cosface", "loss.s": "30"}
    config = load_config(TINY, tiny_overrides(240, **extra))
    final = Trainer(config, tmp_path / "run").run()
    losses = [r["loss/total"] for r in read_log(tmp_path / "run")]
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first - 0.5, (first, last)
    from mobileface.models.checkpoint import load_model_checkpoint

    assert load_model_checkpoint(final).input_size == (64, 64)


@pytest.mark.slow
def test_resume_continues_bit_identically(data_dir: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(8, **{"data.workers": "1"})
    straight = Trainer(load_config(TINY, overrides), tmp_path / "straight")
    straight.run()

    interrupted = tmp_path / "interrupted"
    Trainer(load_config(TINY, overrides), interrupted, stop_at_step=4).run()
    resumed = Trainer(load_config(TINY, overrides), interrupted, resume=True)
    resumed.run()

    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    b = torch.load(interrupted / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses_a = [r["loss/total"] for r in read_log(tmp_path / "straight")]
    losses_b = [r["loss/total"] for r in read_log(interrupted)]
    assert losses_a == losses_b


def test_resume_without_checkpoint_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no checkpoint"):
        Trainer(load_config(TINY, tiny_overrides(4)), tmp_path / "empty", resume=True).run()


@pytest.mark.slow
def test_two_process_ddp_under_torchrun(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    overrides = tiny_overrides(4, **{"optim.batch_size": "8", "loss.sample_rate": "0.5"})
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()),
        "-m", "mobileface", "train", str(TINY), "--out", str(out),
    ] + [a for o in overrides for a in ("--set", o)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 4
    shards = checkpoint["head_shards"]
    assert len(shards) == 2
    num_classes = sum(s["weight"].shape[0] for s in shards)
    assert num_classes == 60  # pins-112 identities, split across the two ranks
    losses = [r["loss/total"] for r in read_log(out)]
    assert len(losses) == 4 and all(map(lambda x: x == x, losses))
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["batch_size"] == 8


# ------------------------------------------------------------- distillation
def test_dlib_teacher_separates_identities(tiny_folder: Path) -> None:
    pytest.importorskip("dlib")
    from mobileface.image import load_image
    from mobileface.train.distill import load_teacher

    people = sorted(tiny_folder.iterdir())
    crops = np.stack([load_image(p) for person in people for p in sorted(person.iterdir())])
    embeddings = load_teacher("dlib")(crops)
    embeddings -= embeddings.mean(axis=0)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(people)), 8)
    similarity = embeddings @ embeddings.T
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    different = labels[:, None] != labels[None]
    assert similarity[same].mean() > similarity[different].mean() + 0.5


@pytest.mark.slow
def test_distillation_from_dlib_trains_and_resumes(tiny_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    cache = tmp_path / "teacher.npy"
    overrides = tiny_overrides(6, **{"optim.batch_size": "8"}) + [
        f"data.datasets=[{{type: folder, path: {tiny_folder}}}]",
        f"distill={{teacher: dlib, kind: embedding, weight: 10, cache: {cache}, workers: 2}}",
    ]
    out = tmp_path / "run"
    Trainer(load_config(TINY, overrides), out, stop_at_step=3).run()
    assert np.load(cache).shape == (24, 2, 128)  # each crop and its mirror image
    Trainer(load_config(TINY, overrides), out, resume=True).run()
    records = read_log(out)
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all(0 <= r["loss/distill"] <= 2 for r in records)
    # The targets: the cached raw embeddings, centred on their mean and L2-normalised.
    raw = np.load(cache)
    trainer = Trainer(load_config(TINY, overrides), tmp_path / "x")
    trainer._build()
    table = trainer.distiller.teacher.numpy()
    centred = raw - raw.reshape(-1, raw.shape[-1]).mean(axis=0)
    np.testing.assert_allclose(np.linalg.norm(table, axis=-1), 1.0, atol=1e-5)
    expected = centred / np.linalg.norm(centred, axis=-1, keepdims=True)
    np.testing.assert_allclose(table, expected, atol=1e-5)
    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert checkpoint["step"] == 6


def test_model_init_starts_from_a_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    first = Trainer(load_config(TINY, tiny_overrides(2)), tmp_path / "first").run()
    trained = torch.load(first, weights_only=True)["model"]
    overrides = tiny_overrides(2) + [f"model.init={first}"]
    second = Trainer(load_config(TINY, overrides), tmp_path / "second")
    second._build()
    for key, value in second.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert second.warm_started == []  # model.pt holds no head: a fresh one
    # A training checkpoint of the same data also gives its margin head: a warm restart.
    checkpoint = first.parent / "checkpoints" / "step_00000002.pt"
    overrides = tiny_overrides(2) + [f"model.init={checkpoint}"]
    third = Trainer(load_config(TINY, overrides), tmp_path / "third")
    third._build()
    assert third.warm_started == ["head"]
    head = torch.load(checkpoint, weights_only=True)["head_shards"][0]
    for key, value in third.head.state_dict().items():
        assert torch.equal(value, head[key]), key
    wrong = tiny_overrides(2) + [f"model.init={first}", "model.name=mobilefacenet_s"]
    with pytest.raises(DataFormatError, match="holds a mobilefacenet, not a mobilefacenet_s"):
        Trainer(load_config(TINY, wrong), tmp_path / "third")._build()


def test_model_init_skip_starts_a_related_architecture(data_dir: Path, tmp_path: Path) -> None:
    """PReLU weights start a ReLU model: everything but the skipped slopes is carried over."""
    first = Trainer(load_config(TINY, tiny_overrides(1)), tmp_path / "first").run()
    trained = torch.load(first, weights_only=True)["model"]
    relu = [f"model.init={first}", "model.name=mobilefacenet_relu"]
    with pytest.raises(DataFormatError, match="holds a mobilefacenet, not a mobilefacenet_relu"):
        Trainer(load_config(TINY, tiny_overrides(1) + relu), tmp_path / "x")._build()
    skip = ['model.init_skip=["*.act.weight"]']
    second = Trainer(load_config(TINY, tiny_overrides(1) + relu + skip), tmp_path / "second")
    second._build()
    state = second.model.state_dict()
    assert set(trained) - set(state) == {k for k in trained if k.endswith(".act.weight")}
    for key, value in state.items():
        assert torch.equal(value, trained[key]), key
    # Skipping does not excuse other differences: a narrower model still does not fit.
    narrow = [f"model.init={first}", "model.name=mobilefacenet_s", *skip]
    with pytest.raises(DataFormatError, match="weights do not fit mobilefacenet_s"):
        Trainer(load_config(TINY, tiny_overrides(1) + narrow), tmp_path / "third")._build()
    # Tensors the model has but the pattern skips keep their fresh values (a re-initialised stem).
    stem = [f"model.init={first}", 'model.init_skip=["stem.0.conv.*"]']
    fresh = Trainer(load_config(TINY, tiny_overrides(1) + stem), tmp_path / "fourth")
    fresh._build()
    for key, value in fresh.model.state_dict().items():
        assert torch.equal(value, trained[key]) != key.startswith("stem.0.conv"), key
