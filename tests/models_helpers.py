"""Helpers for model tests: give a freshly built model non-trivial, realistic statistics."""

from __future__ import annotations

import torch
from torch import nn


def randomize_and_calibrate(model: nn.Module, seed: int = 0, batches: int = 3) -> nn.Module:
    """Random BN affine and PReLU slopes, then BN running stats measured on random images.

    A freshly initialised model has BN running statistics (0, 1) that make folding trivial and
    outputs tiny; this makes equivalence tests meaningful. Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=gen) * 0.1
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        elif isinstance(m, nn.PReLU):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) * 0.5
    model.train()
    h, w = model.input_size
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(8, 3, h, w, generator=gen) * 2 - 1)
    return model.eval()


def assert_outputs_match(result, reference, rel: float = 1e-4) -> None:
    """Two network outputs agree within ``rel`` of the reference's largest magnitude.

    fp32 sums taken in another order (another runtime, batch size or graph) differ by about
    1e-6 of the output's scale; a wrong export differs by its whole size. An absolute bound
    would sit on a knife edge for outputs of a larger scale.
    """
    import numpy as np

    result, reference = np.asarray(result), np.asarray(reference)
    assert result.shape == reference.shape
    scale = float(np.abs(reference).max())
    assert scale > 0, "an all-zero reference proves nothing"
    np.testing.assert_allclose(result, reference, rtol=0, atol=rel * scale)
