"""TFLite export through ``litert-torch`` (Google's PyTorch -> LiteRT converter), optional.

``pip install 'mobileface[tflite]'`` installs it (it brings JAX and friends, so it is not part
of the default extras). The converter lowers PReLU to ``RELU``/``MUL``/``SUB`` and GDConv to
``DEPTHWISE_CONV_2D``: plain TFLite builtins that every LiteRT delegate runs. The file keeps
the PyTorch NCHW input (``1 x 3 x H x W``, normalised like the ONNX export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobileface.errors import MissingDependencyError

from .onnx import ParityReport


def _litert_torch() -> Any:
    try:
        import litert_torch
    except ImportError as exc:
        raise MissingDependencyError(
            "TFLite export needs litert-torch: pip install 'mobileface[tflite]'"
        ) from exc
    return litert_torch


def export_tflite(model: nn.Module, path: str | Path) -> Path:
    """Convert ``model`` (BN folded, eval mode, batch 1) to a ``.tflite`` file at ``path``."""
    from mobileface.models.fold import fold_batchnorm

    litert_torch = _litert_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = model.input_size
    deploy = fold_batchnorm(model).eval()
    edge = litert_torch.convert(deploy, (torch.zeros(1, 3, h, w),))
    edge.export(str(path))
    return path


def tflite_parity(
    model: nn.Module, path: str | Path, inputs: np.ndarray, *, threads: int = 1
) -> ParityReport:
    """Compare the ``.tflite`` file (LiteRT interpreter) with ``model`` on ``inputs``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    x = np.asarray(inputs, dtype=np.float32)
    got = []
    for row in x:
        interpreter.set_tensor(inp, row[None])
        interpreter.invoke()
        got.append(np.array(interpreter.get_tensor(out)).reshape(-1))
    got_arr = np.stack(got).astype(np.float64)
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy().astype(np.float64)
    cos = np.sum(expected * got_arr, 1) / np.maximum(
        np.linalg.norm(expected, axis=1) * np.linalg.norm(got_arr, axis=1), 1e-12
    )
    return ParityReport(
        len(x),
        float(np.abs(expected - got_arr).max()),
        float(cos.min()),
        float(cos.mean()),
        "inputs",
    )
