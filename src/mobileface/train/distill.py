"""Knowledge distillation from a teacher whose embeddings are computed once and cached.

The teacher sees every training crop once, and its mirror image (unaugmented otherwise). Its
raw embeddings are stored in a ``.npy`` file keyed by the teacher, the sample list and the
crop files, so later runs, resumed runs and every rank reuse them; a mirrored training crop is
pulled towards the teacher's embedding of the mirrored crop. The targets are centred on their
mean over the training set (dlib's descriptors of two strangers still have a cosine of about
0.8: the shared offset carries no identity) and L2-normalised. During training the student is
pulled towards the teacher:

- ``embedding``: ``1 - cos(P s, t)`` per sample, with ``P`` a learned linear map from the
  student's to the teacher's width (identity-initialised when the widths match);
- ``similarity``: mean squared difference between the batch's student and teacher cosine
  similarity matrices, which needs no projection and leaves the student's space free.

Teachers: ``dlib`` (dlib's ResNet from ``face-recognition-models``, CC0 weights, on its own
chips: :mod:`mobileface.runtime.dlib_embedder`), or the path of any ONNX or OpenVINO IR
(``.xml``) embedder, such as Intel's Apache-2.0 ``face-reidentification-retail-0095``, the
strongest licensed teacher we have.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mobileface.errors import DataFormatError
from mobileface.paths import cache_dir

from .config import AugmentConfig, DistillConfig
from .data import FaceDataset, SampleList
from .distributed import DistInfo, barrier

ARCFACE_CROP = (112, 112)  # the training crops' native size: what dlib and OpenVINO teachers take
TeacherFn = Callable[[np.ndarray], np.ndarray]  # batch of HxWx3 uint8 RGB -> (N, D)


def load_teacher(name: str) -> TeacherFn:
    """``dlib`` or the path of an ONNX or OpenVINO embedder, through the torch-free runtime."""
    from mobileface.runtime import open_embedder

    return open_embedder(name).embed


def teacher_name(name: str) -> str:
    """The identity of a teacher, for cache keys: changes when its weights or input change."""
    from mobileface.paths import sha256_of
    from mobileface.runtime.dlib_embedder import DlibEmbedder
    from mobileface.runtime.openvino_embedder import ir_sha256

    if name == "dlib":
        return DlibEmbedder.sha256
    path = Path(name)
    if not path.is_file():
        raise DataFormatError(f"distill.teacher: {name}: no such model file (or 'dlib')")
    suffix = path.suffix.lower()
    digest = ir_sha256(path) if suffix == ".xml" else sha256_of(path)
    return f"{suffix.lstrip('.')}-{digest[:16]}"


def teacher_input_size(name: str) -> tuple[int, int]:
    """The crop size a teacher takes: dlib and OpenVINO teachers cut their own input from a
    112 x 112 ArcFace crop; an ONNX embedder says its own."""
    if name == "dlib" or Path(name).suffix.lower() == ".xml":
        return ARCFACE_CROP
    from mobileface.runtime import open_embedder

    return tuple(open_embedder(name).input_size)


def online_teacher(config: DistillConfig | None, image_size: tuple[int, int]) -> str | None:
    """The teacher the training loader runs on each augmented crop (``distill.online``), or
    None. Online teaching needs a teacher that takes the student's crops as they are."""
    if config is None or not config.online:
        return None
    size = teacher_input_size(config.teacher)
    if tuple(size) != tuple(image_size):
        raise DataFormatError(
            f"distill.online: the teacher {config.teacher} takes {size[0]}x{size[1]} crops and "
            f"the student {image_size[0]}x{image_size[1]}; online teaching needs the same size"
        )
    return config.teacher


def teacher_cache_path(
    config: DistillConfig, samples: SampleList, image_size: tuple[int, int]
) -> Path:
    """Where the teacher's table for these samples lives: ``distill.cache``, or a file in the
    user cache named by a key over the teacher's weights, the sample list, each crop file's
    size and modification time, and the crop size, so a changed crop or teacher is never read
    stale."""
    if config.cache:
        return Path(config.cache)
    parts = [teacher_name(config.teacher), samples.fingerprint(), samples.content_fingerprint()]
    key = ":".join([*parts, str(tuple(image_size)), f"views{len(VIEWS)}"])
    return cache_dir() / "teacher" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def teacher_embeddings(
    config: DistillConfig, samples: SampleList, info: DistInfo
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's L2-normalised embedding of every sample and its mirror image (``N x 2 x
    D``), computed once (by rank 0, resumably) and cached, with the mean subtracted before
    normalising (zero when ``config.center`` is off). The teacher sees the crops at its own
    input size, whatever the student's."""
    image_size = teacher_input_size(config.teacher)
    path = teacher_cache_path(config, samples, image_size)
    if info.is_main and not path.exists():
        loader = FaceDataset(samples, image_size, AugmentConfig(flip=0), 0)
        _run_teacher(config, loader, path)
    barrier()
    table = np.load(path).astype(np.float32)
    if table.ndim != 3 or table.shape[:2] != (len(samples.refs), len(VIEWS)):
        raise DataFormatError(
            f"{path}: teacher embeddings of shape {table.shape}, expected "
            f"({len(samples.refs)}, {len(VIEWS)}, D) for these samples and their mirror images: "
            "delete the file to compute it again"
        )
    mean = np.zeros(table.shape[-1], np.float32)
    if config.center:
        mean = table.reshape(-1, table.shape[-1]).mean(axis=0)
    return _normalise(table - mean), mean


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


VIEWS = ("original", "mirrored")
_worker_teacher: TeacherFn | None = None


def _start_worker(name: str) -> None:
    global _worker_teacher
    _worker_teacher = load_teacher(name)


def _worker_embed(batch: np.ndarray) -> np.ndarray:
    """Raw embeddings of a batch and of its mirror image: ``N x 2 x D``."""
    both = _worker_teacher(np.concatenate([batch, batch[:, :, ::-1]]))
    return np.stack([both[: len(batch)], both[len(batch) :]], axis=1)


def _run_teacher(config: DistillConfig, loader: FaceDataset, path: Path, chunk: int = 32) -> None:
    """Every sample's raw teacher embeddings (both views) into ``path``, over
    ``config.workers`` processes.

    Rows are written into ``path``'s partial file as they come, with a count of finished rows
    beside it, flushed every few batches: a killed run resumes where it stopped. The finished
    table replaces ``path`` atomically.
    """
    count = len(loader.samples.refs)
    partial = path.with_name(f"{path.stem}.partial.npy")
    progress_file = path.with_name(f"{path.stem}.partial.json")
    done = 0
    if partial.exists() and progress_file.exists():
        state = json.loads(progress_file.read_text())
        if state.get("rows") == count:
            done = int(state.get("done", 0))
    table = np.lib.format.open_memmap(partial, mode="r+") if done else None
    batches = (
        np.stack([loader.load(i) for i in range(start, min(start + chunk, count))])
        for start in range(done, count, chunk)
    )
    workers = config.workers or os.cpu_count() or 1
    progress = tqdm(
        desc="teacher embeddings (each crop and its mirror image)",
        unit="img",
        total=count,
        initial=done,
        dynamic_ncols=True,
    )

    def write(rows: np.ndarray) -> None:
        nonlocal table, done
        if table is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            shape = (count, *rows.shape[1:])
            table = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
        table[done : done + len(rows)] = rows
        done += len(rows)
        progress.update(len(rows))
        if done == count or done // chunk % 20 == 0:  # checkpoint the progress
            table.flush()
            _write_atomic(progress_file, json.dumps({"rows": count, "done": done}))

    if workers == 1:
        _start_worker(config.teacher)
        for batch in batches:
            write(_worker_embed(batch))
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, _start_worker, (config.teacher,)) as pool:
            for rows in pool.imap(_worker_embed, batches):
                write(rows)
    progress.close()
    if table is None:
        raise DataFormatError("no training samples to compute teacher embeddings for")
    table.flush()
    del table
    os.replace(partial, path)
    progress_file.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Distiller(nn.Module):
    """Distillation loss against cached teacher embeddings, looked up by sample index."""

    def __init__(
        self,
        config: DistillConfig,
        samples: SampleList,
        student_dim: int,
        info: DistInfo,
    ) -> None:
        super().__init__()
        self.kind = config.kind
        table, mean = teacher_embeddings(config, samples, info)
        self.register_buffer("teacher", torch.from_numpy(table), persistent=False)
        self.register_buffer("center", torch.from_numpy(mean), persistent=False)
        teacher_dim = table.shape[-1]
        self.projection = None
        if self.kind == "embedding":
            self.projection = nn.Linear(student_dim, teacher_dim, bias=False)
            if student_dim == teacher_dim:
                nn.init.eye_(self.projection.weight)

    def forward(
        self,
        student: torch.Tensor,
        indices: torch.Tensor,
        mirrored: torch.Tensor | None = None,
        online: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss for a batch of samples ``indices``, seen mirrored where ``mirrored``; or,
        given ``online`` (the teacher's raw embeddings of the very crops the student saw),
        against those."""
        if online is not None and online.numel():
            target = F.normalize(online - self.center)
        else:
            views = torch.zeros_like(indices) if mirrored is None else mirrored.long()
            target = self.teacher[indices, views]
        if self.kind == "embedding":
            projected = F.normalize(self.projection(student))
            return (1 - (projected * target).sum(1)).mean()
        s = F.normalize(student)
        return F.mse_loss(s @ s.T, target @ target.T)
