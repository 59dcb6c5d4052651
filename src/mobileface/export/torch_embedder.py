"""A PyTorch embedder with the runtime's interface: training checkpoints used like ONNX files.

``open_embedder("run/best.pt")`` lands here, so that evaluation, ``verify`` and ``embed`` can
use a checkpoint straight from training without exporting it first. The model runs with its
batch norms folded, in eval mode, on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobileface.errors import ModelFileError
from mobileface.runtime.preprocess import Normalization, as_crop_batch


class TorchEmbedder:
    """A zoo model (a checkpoint path or a module) behind the runtime's ``Embedder`` interface.

    ``threads`` sets PyTorch's intra-op threads for this process (a global setting in
    PyTorch). ``input_size`` may only confirm the model's own size.
    """

    def __init__(
        self,
        model: str | Path | nn.Module,
        *,
        threads: int = 1,
        batch_size: int = 32,
        normalization: Normalization | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        from mobileface.models import fold_batchnorm

        if isinstance(model, nn.Module):
            module, self.path = model, None
            self.name = getattr(model, "model_name", type(model).__name__)
        else:
            from mobileface.models.checkpoint import load_model_checkpoint

            self.path = Path(model)
            module = load_model_checkpoint(self.path)
            self.name = self.path.stem
        self.architecture = getattr(module, "model_name", type(module).__name__)
        self.input_size = tuple(int(v) for v in module.input_size)
        if input_size is not None and tuple(int(v) for v in input_size) != self.input_size:
            raise ModelFileError(
                f"{self.path or self.name}: the model takes {self.input_size[0]}x"
                f"{self.input_size[1]} inputs, not {input_size[0]}x{input_size[1]}"
            )
        self.embedding_size = int(module.embedding_size)
        self.normalization = normalization or Normalization()
        self.batch_size = max(1, int(batch_size))
        self.threads = max(1, int(threads))
        self.thresholds: dict[str, float] = {}
        self.thresholds_source = ""
        self.precision = "fp32"
        self.model = fold_batchnorm(module).eval()
        torch.set_num_threads(self.threads)

    def __repr__(self) -> str:
        return f"TorchEmbedder({self.name!r}, input={self.input_size}, dim={self.embedding_size})"

    def embed(self, crops: Any) -> np.ndarray:
        """Raw embeddings (``N x D`` float32) of aligned uint8 RGB crops of the input size."""
        batch = as_crop_batch(crops, self.input_size)
        out = np.empty((len(batch), self.embedding_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                chunk = batch[start : start + self.batch_size]
                x = torch.from_numpy(self.normalization(chunk))
                out[start : start + len(chunk)] = self.model(x).reshape(len(chunk), -1).numpy()
        return out
