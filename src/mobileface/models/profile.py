"""Counting parameters and multiply-adds.

The multiply-add count follows the convention of the papers: one multiply-add per weight per
output position of every convolution and linear layer. Batch norm, activations, pooling,
element-wise products and additions are not counted (they fold away or are negligible).
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameters the model holds (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def conv_madds(conv: nn.Conv2d, output: torch.Tensor) -> int:
    """Multiply-adds of one convolution for one sample, given its output tensor."""
    kh, kw = conv.kernel_size
    per_output = (conv.in_channels // conv.groups) * kh * kw
    return per_output * output[0].numel()


def linear_madds(linear: nn.Linear, output: torch.Tensor) -> int:
    """Multiply-adds of one linear layer for one sample (leading batch dimension)."""
    return linear.in_features * output[0].numel()


def count_madds(model: nn.Module, input_size: tuple[int, int] | None = None) -> int:
    """Multiply-adds of one forward pass on one ``3 x H x W`` image.

    ``input_size`` defaults to the model's own ``input_size`` attribute.
    """
    size = input_size or model.input_size
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += conv_madds(module, output)
        elif isinstance(module, nn.Linear):
            total += linear_madds(module, output)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
