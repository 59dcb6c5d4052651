"""Face embedders in OpenVINO IR (``.xml`` + ``.bin``), such as Intel's Open Model Zoo
``face-reidentification-retail-0095``: the project's licensed distillation teacher.

Open Model Zoo face embedders are trained on the 96 x 112 five-point template, which is the
central 96 columns of our 112 x 112 ArcFace crop. :class:`OpenVINOEmbedder` therefore takes our
crops, cuts that part out and stretches it to the network's input (128 x 128 for the retail
model), in BGR at 0-255 (the scaling lives inside those graphs). Runs on the CPU through
``openvino`` from PyPI; no PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mobileface.errors import MissingDependencyError, ModelFileError

from .preprocess import Normalization, as_crop_batch

CROP_SIZE = (112, 112)  # the ArcFace-template crops this embedder takes (height, width)
TEMPLATE_96_COLUMNS = (8, 104)  # columns of a 112 x 112 crop that hold the 96 x 112 template


def ir_sha256(path: str | Path) -> str:
    """SHA-256 over an IR's ``.xml`` and then its ``.bin``: changes with graph or weights."""
    import hashlib

    digest = hashlib.sha256()
    for part in (Path(path), Path(path).with_suffix(".bin")):
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class OpenVINOEmbedder:
    """A face embedder in OpenVINO IR, fed 112 x 112 ArcFace crops (see the module docstring).

    Raises :class:`ModelFileError` for a missing or unreadable IR, or one that is not an image
    embedder (one ``N x 3 x H x W`` input, ``N x D`` or ``N x D x 1 x 1`` output).
    """

    input_size = CROP_SIZE
    normalization = Normalization(0.0, 1.0, bgr=True)  # what the network sees, for reports
    precision = "fp16"
    architecture = None

    def __init__(self, path: str | Path, *, threads: int = 1, batch_size: int = 32) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise MissingDependencyError(
                f"{path}: OpenVINO IR models need the openvino package: pip install openvino"
            ) from exc
        self.path = Path(path)
        if not self.path.is_file() or not self.path.with_suffix(".bin").is_file():
            raise ModelFileError(
                f"{self.path}: an OpenVINO model needs both the .xml and its .bin beside it"
            )
        self.name = self.path.stem
        self.batch_size = max(1, int(batch_size))
        self.thresholds: dict[str, float] = {}
        self.thresholds_source = ""
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{self.path}: not a readable OpenVINO model ({reason})") from None
        if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
            raise ModelFileError(f"{self.path}: not a face embedder (one N x 3 x H x W input)")
        shape = model.inputs[0].get_partial_shape()
        self.network_size = (shape[2].get_length(), shape[3].get_length())
        model.reshape({model.inputs[0].get_any_name(): [-1, 3, *self.network_size]})
        config = {"INFERENCE_NUM_THREADS": max(1, int(threads)), "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(model, "CPU", config)
        out_dims = [d.get_length() for d in list(model.outputs[0].get_partial_shape())[1:]]
        self.embedding_size = int(np.prod(out_dims))

    def __repr__(self) -> str:
        h, w = self.network_size
        return (
            f"OpenVINOEmbedder({str(self.path)!r}, network input={h}x{w}, "
            f"dim={self.embedding_size})"
        )

    @property
    def sha256(self) -> str:
        """The model's identity (computed once): see :func:`ir_sha256`."""
        if not hasattr(self, "_sha256"):
            self._sha256 = ir_sha256(self.path)
        return self._sha256

    def network_input(self, crops: Any) -> np.ndarray:
        """112 x 112 RGB crops -> the network's ``N x 3 x H x W`` BGR float input."""
        batch = as_crop_batch(crops, self.input_size)
        left, right = TEMPLATE_96_COLUMNS
        h, w = self.network_size
        resized = [
            cv2.resize(crop[:, left:right, ::-1], (w, h), interpolation=cv2.INTER_LINEAR)
            for crop in batch
        ]
        return np.ascontiguousarray(np.stack(resized).transpose(0, 3, 1, 2), dtype=np.float32)

    def embed(self, crops: Any) -> np.ndarray:
        """Raw embeddings (``N x D`` float32) of aligned 112 x 112 uint8 RGB ``crops``."""
        x = self.network_input(crops)
        out = np.empty((len(x), self.embedding_size), dtype=np.float32)
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            result = self.compiled(chunk)[self.compiled.outputs[0]]
            out[start : start + len(chunk)] = np.asarray(result).reshape(len(chunk), -1)
        return out
