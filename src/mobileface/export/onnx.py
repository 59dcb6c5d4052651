"""ONNX export of zoo models: batch norm folded, dynamic batch, standard opset."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from mobileface.models.fold import fold_batchnorm

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = True,
    dynamic_batch: bool = True,
) -> Path:
    """Write ``model`` (input ``N x 3 x H x W``, output ``N x D``) to ``path`` as ONNX.

    The model is exported in eval mode with its batch norms folded into the convolutions.
    Input and output are named ``input`` and ``embedding``; the batch axis is dynamic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deploy = fold_batchnorm(model) if fold_bn else model.eval()
    h, w = model.input_size
    dummy = torch.zeros(1, 3, h, w)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            deploy,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    return path
