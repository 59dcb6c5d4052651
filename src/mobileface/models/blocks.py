"""Building blocks shared by the model families.

Every block is small and keeps its convolution and its batch norm as named children
(``conv``, ``bn``) so that :func:`mobileface.models.fold.fold_batchnorm` can merge them for
deployment without knowing the architecture.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("prelu", "prelu_shared", "relu", "relu6", "swish", "none")


def make_activation(name: str, channels: int) -> nn.Module:
    """Return the activation called ``name`` for a tensor with ``channels`` channels.

    ``prelu`` learns a slope per channel; ``prelu_shared`` one slope per layer, which exports
    as ``LeakyRelu`` and fuses into the convolution before it in ONNX Runtime.
    """
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "prelu_shared":
        return nn.PReLU(1)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class ConvBNAct(nn.Module):
    """Convolution without bias, batch norm, then an activation (``act="none"``: linear)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = "prelu",
        padding: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
            padding = k // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(act, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class LinearBN(nn.Module):
    """Linear layer without bias followed by 1-d batch norm: an embedding projection."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x))


class GDConv(ConvBNAct):
    """Global depthwise convolution: a linear depthwise conv whose kernel covers the whole map.

    MobileFaceNets replace global average pooling with it, so that each spatial position of
    the last feature map gets its own learned weight (the face centre matters more than the
    corners).
    """

    def __init__(self, channels: int, kernel_size: tuple[int, int]) -> None:
        super().__init__(channels, channels, kernel_size, groups=channels, act="none", padding=0)


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: 1x1 expansion, 3x3 depthwise, linear 1x1 projection.

    The residual connection is used when the stride is 1 and the widths match.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expansion: int, act: str
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, act=act))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=act),
            ConvBNAct(hidden, out_channels, 1, act="none"),
        ]
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


def make_stages(
    block: type[nn.Module],
    in_channels: int,
    settings: list[tuple[int, int, int, int]],
    **block_kwargs: object,
) -> tuple[nn.Sequential, int]:
    """Stack bottleneck stages from (expansion t, channels c, repeats n, stride s) rows.

    The first block of each stage carries the stride; the rest keep the resolution.
    Returns the stages and the output width.
    """
    blocks: list[nn.Module] = []
    channels = in_channels
    for expansion, out_channels, repeats, stride in settings:
        for i in range(repeats):
            blocks.append(
                block(channels, out_channels, stride if i == 0 else 1, expansion, **block_kwargs)
            )
            channels = out_channels
    return nn.Sequential(*blocks), channels


class EmbeddingHead(nn.Module):
    """Flatten an ``N x D x 1 x 1`` map into ``N x D`` embeddings."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def feature_map_size(input_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Spatial size after a network of total ``stride`` (3x3 convs padded by 1)."""
    h, w = input_size
    for _ in range(stride.bit_length() - 1):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features.

    The two fully connected layers are 1x1 convolutions with bias (same parameters as linear
    layers, friendlier to channels-last and to exporters).
    """

    def __init__(self, channels: int, reduction: int = 4, act: str = "prelu") -> None:
        super().__init__()
        squeezed = channels // reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = make_activation(act, squeezed)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: interleave ``groups`` equal channel groups."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
