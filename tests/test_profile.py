"""The multiply-add counter against layers worked out by hand."""

from __future__ import annotations

import torch
from torch import nn

from mobileface.models import count_madds, count_parameters


class Tiny(nn.Module):
    def __init__(self, *layers: nn.Module, input_size: tuple[int, int] = (16, 16)) -> None:
        super().__init__()
        self.body = nn.Sequential(*layers)
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_plain_convolution() -> None:
    # 3->8 channels, 3x3, stride 2, padding 1 on 16x16: 8x8 outputs, 3*9 MACs each per channel.
    model = Tiny(nn.Conv2d(3, 8, 3, 2, 1))
    assert count_madds(model) == 8 * 8 * 8 * 3 * 3 * 3 == 13_824


def test_depthwise_convolution() -> None:
    # Depthwise 3x3 on 4 channels of 16x16, stride 1: one 9-tap filter per output value.
    model = Tiny(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, 1, 1, groups=4))
    pointwise = 16 * 16 * 4 * 3
    depthwise = 16 * 16 * 4 * 9
    assert count_madds(model) == pointwise + depthwise == 12_288


def test_grouped_convolution_and_global_kernel() -> None:
    # Groups of 2 input channels each; then a 16x16 "global" depthwise kernel (GDConv).
    model = Tiny(nn.Conv2d(4, 6, 1, groups=2), nn.Conv2d(6, 6, 16, groups=6), input_size=(16, 16))
    model.body.insert(0, nn.Conv2d(3, 4, 1))
    expected = 16 * 16 * 4 * 3 + 16 * 16 * 6 * 2 + 1 * 1 * 6 * 256
    assert count_madds(model) == expected


def test_linear_layers_and_non_counted_ops() -> None:
    model = Tiny(
        nn.Conv2d(3, 2, 1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 5),
        input_size=(4, 4),
    )
    assert count_madds(model) == 4 * 4 * 2 * 3 + 2 * 5
    assert count_parameters(model) == (3 * 2 + 2) + 2 * 2 + (2 * 5 + 5)


def test_counting_keeps_training_mode() -> None:
    model = Tiny(nn.Conv2d(3, 2, 1)).train()
    count_madds(model)
    assert model.training
