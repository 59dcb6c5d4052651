"""Training configuration: a YAML file validated into typed, frozen models.

Unknown keys, wrong types and impossible values are refused with the offending key named.
``--set a.b=value`` overrides are applied to the raw YAML before validation, so they are
checked the same way. Paths may use ``${VAR}`` (environment variables, e.g.
``${MOBILEFACE_DATA}``, which defaults to ``../shared/data``) and are resolved relative to the
config file. ``base: other.yaml`` starts a config from another one (a second training stage
names only what changes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mobileface.errors import DataFormatError
from mobileface.paths import DATA_ENV, data_dir


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    name: str = "mobilefacenet"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    channels_last: bool = True
    compile: bool = False
    init: Path | None = None  # start from this checkpoint's weights (see init_skip)
    # Checkpoint tensors (glob patterns) that ``init`` does not carry over; with any, ``init``
    # may come from a related architecture (e.g. "*.act.weight": PReLU slopes, for a ReLU model).
    init_skip: list[str] = Field(default_factory=list)


class DatasetConfig(_Strict):
    """One source of labelled faces.

    ``type``: ``folder`` (one sub-folder per identity), ``labels`` (a TSV of file and
    identity under ``images``), or ``rec`` (InsightFace RecordIO; ``path`` is the .rec file).
    Datasets sharing a ``namespace`` merge identities by name (and, with ``dedupe``, skip a
    file name already seen in that namespace); otherwise identities stay distinct.
    """

    type: Literal["folder", "labels", "rec"] = "folder"
    path: Path
    images: Path | None = None
    namespace: str | None = None
    dedupe: bool = False
    min_images: int = Field(1, ge=1)


class AugmentConfig(_Strict):
    flip: float = Field(0.5, ge=0, le=1)
    crop_scale: float = Field(0.0, ge=0, le=0.5)
    color_jitter: float = Field(0.0, ge=0, le=1)
    blur: float = Field(0.0, ge=0, le=1)
    grayscale: float = Field(0.0, ge=0, le=1)
    low_resolution: float = Field(0.0, ge=0, le=1)


class DataConfig(_Strict):
    datasets: list[DatasetConfig] = Field(min_length=1)
    augment: AugmentConfig = AugmentConfig()
    workers: int = Field(2, ge=0)
    cache_dir: Path | None = None  # decoded-image cache (uint8 memmap); None: no cache


class LossConfig(_Strict):
    type: Literal["arcface", "cosface", "sphereface", "combined", "softmax"] = "arcface"
    s: float = Field(64.0, gt=0)
    m1: float | None = None
    m2: float | None = None
    m3: float | None = None
    sample_rate: float = Field(1.0, gt=0, le=1)
    weight: float = Field(1.0, ge=0)  # 0: no margin loss (pure distillation)


class DistillConfig(_Strict):
    """Distillation from a teacher whose embeddings are precomputed once and cached."""

    teacher: str  # "dlib", or the path of an ONNX or OpenVINO (.xml) embedder
    kind: Literal["embedding", "similarity"] = "similarity"
    weight: float = Field(1.0, ge=0)
    cache: Path | None = None
    center: bool = True  # subtract the teacher embeddings' mean before normalising
    workers: int = Field(0, ge=0)  # processes computing the teacher's embeddings; 0: one per CPU
    # True: the teacher also embeds each augmented crop as it is drawn (in the loader's
    # workers), so every augmentation is taught consistently; the cached table then only
    # gives the centring mean.
    online: bool = False


class OptimConfig(_Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)
    head_weight_decay: float = Field(4e-4, ge=0)  # layers after GDConv and the margin head
    batch_size: int = Field(64, ge=1)  # per process
    grad_clip: float | None = Field(None, gt=0)


class ScheduleConfig(_Strict):
    type: Literal["step", "cosine", "poly", "constant"] = "step"
    steps: int = Field(gt=0)
    warmup_steps: int = Field(0, ge=0)
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0, le=1)
    power: float = Field(2.0, gt=0)
    min_lr: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps})"
            )
        if self.milestones != sorted(self.milestones) or any(
            not 0 < m < self.steps for m in self.milestones
        ):
            raise ValueError(f"milestones {self.milestones} must increase within (0, {self.steps})")
        return self


class EvalConfig(_Strict):
    """Verification on a pair list during training (e.g. LFW View 1 pairsDevTest.txt)."""

    pairs: Path
    images: Path
    aligned: bool = True
    every: int = Field(1000, gt=0)
    batch_size: int = Field(128, gt=0)


class TrainConfig(_Strict):
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    log_every: int = Field(20, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    keep_checkpoints: int = Field(2, ge=1)
    tensorboard: bool = True


class Config(_Strict):
    model: ModelConfig = ModelConfig()
    data: DataConfig
    loss: LossConfig = LossConfig()
    distill: DistillConfig | None = None
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig
    eval: EvalConfig | None = None
    train: TrainConfig = TrainConfig()


_VAR = re.compile(r"\$\{(\w+)\}")


def _expand(value: str) -> str:
    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name == DATA_ENV:
            return str(data_dir())
        if name not in os.environ:
            raise DataFormatError(f"config uses ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _VAR.sub(lookup, value)


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the raw config dictionary."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise DataFormatError(f"override {assignment!r} is not of the form key.path=value")
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise DataFormatError(f"override {assignment!r}: {part!r} is not a section")
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = yaml.safe_load(text)
    elif isinstance(node, dict):
        node[last] = yaml.safe_load(text)
    else:
        raise DataFormatError(f"override {assignment!r}: cannot set {last!r}")


def _resolve_paths(node: Any, base: Path, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _resolve_paths(v, base, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_paths(v, base, key) for v in node]
    if isinstance(node, str) and key in {
        "path",
        "images",
        "pairs",
        "cache",
        "cache_dir",
        "teacher",
        "init",
    }:
        expanded = _expand(node)
        if key == "teacher" and expanded == "dlib":
            return expanded
        path = Path(expanded).expanduser()
        return str(path if path.is_absolute() else (base / path))
    return node


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: sections merge key by key, lists and values are replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_recipe(path: Path, resolve: bool = True, chain: tuple[Path, ...] = ()) -> dict:
    """A config file as plain data over its ``base:`` file, if any, before validation.

    With ``resolve``, each file's paths are made absolute relative to that file; without, the
    recipe reads as written (for model cards).
    """
    if not path.is_file():
        raise DataFormatError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataFormatError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DataFormatError(f"{path}: the top level must be a mapping of sections")
    if resolve:
        raw = _resolve_paths(raw, path.resolve().parent)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise DataFormatError(f"{path}: 'base' must be the path of another config file")
    base_path = (path.resolve().parent / _expand(base)).resolve()
    if base_path in chain or base_path == path.resolve():
        raise DataFormatError(f"{path}: 'base' chain loops back to {base_path}")
    return _merge(read_recipe(base_path, resolve, (*chain, path.resolve())), raw)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read (over its ``base:`` file, if any), override, resolve and validate a config file."""
    path = Path(path)
    raw = read_recipe(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    raw = _resolve_paths(raw, path.resolve().parent)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise DataFormatError(f"{path}: invalid config: {problems}") from None


def config_to_dict(config: Config) -> dict:
    """Plain-data form of a config (for checkpoints and logs)."""
    return config.model_dump(mode="json")
