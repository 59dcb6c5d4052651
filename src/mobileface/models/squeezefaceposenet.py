"""SqueezeFacePoseNet (Alonso-Fernandez et al. 2020, arXiv:2007.08566).

SqueezeNet adapted to pose-robust face recognition on 113x113 loose crops (the VGGFace2 box
enlarged by 30%). Layer table:

=========  ==========================================
layer      configuration
=========  ==========================================
conv1      3x3, 64, stride 1, ReLU
maxpool1   3x3, stride 2
fire2-4    squeeze/expand 16/64, 16/64, 32/128
maxpool4   3x3, stride 2
fire5-8    32/128, 48/192, 48/192, 64/256
maxpool8   3x3, stride 2
fire9      64/256
dropout    p = 0.5
conv10     1x1, 1000, ReLU
pool10     global average pooling -> 1000-d
=========  ==========================================

A fire module squeezes with a 1x1 conv, then expands with parallel 1x1 and 3x3 convs whose
outputs are concatenated (2 x expand channels). There is no batch norm; every conv has a bias.
The lighter ``squeezefaceposenet_dw`` groups each 3x3 expand conv with groups = squeeze
channels (4 filters per group).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

PAPER = "SqueezeFacePoseNet (Alonso-Fernandez et al. 2020, arXiv:2007.08566)"

# (squeeze, expand) per fire module, with "M" for a 3x3/2 max pool.
FIRE_LAYOUT: list[tuple[int, int] | str] = [
    "M", (16, 64), (16, 64), (32, 128),
    "M", (32, 128), (48, 192), (48, 192), (64, 256),
    "M", (64, 256),
]  # fmt: skip


class Fire(nn.Module):
    """SqueezeNet's fire module; ``grouped`` groups the 3x3 expand by the squeeze width."""

    def __init__(self, in_channels: int, squeeze: int, expand: int, grouped: bool) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1, groups=squeeze if grouped else 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(self.squeeze(x))
        return self.act(torch.cat((self.expand1x1(s), self.expand3x3(s)), 1))


class SqueezeFacePoseNet(nn.Module):
    """SqueezeNet face embedder with a 1000-d output (conv10 + ReLU + global average pool)."""

    def __init__(
        self,
        input_size: tuple[int, int] = (113, 113),
        embedding_size: int = 1000,
        grouped: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.input_size = tuple(input_size)
        self.embedding_size = embedding_size
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1), nn.ReLU(inplace=True)]
        channels = 64
        for item in FIRE_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                squeeze, expand = item
                layers.append(Fire(channels, squeeze, expand, grouped))
                channels = 2 * expand
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Conv2d(channels, embedding_size, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(
    "squeezefaceposenet",
    family="squeezefaceposenet",
    input_size=(113, 113),
    embedding_size=1000,
    paper=PAPER,
    description="SqueezeNet for pose-robust faces, 113x113 loose crops, 1000-d",
    paper_figures={"params": 1_240_000},
)
def squeezefaceposenet(**kwargs: object) -> SqueezeFacePoseNet:
    return SqueezeFacePoseNet(**kwargs)


@register_model(
    "squeezefaceposenet_dw",
    family="squeezefaceposenet",
    input_size=(113, 113),
    embedding_size=1000,
    paper=PAPER,
    description="SqueezeFacePoseNet with grouped 3x3 expand convs (4 filters per group)",
    paper_figures={"params": 694_056},
)
def squeezefaceposenet_dw(**kwargs: object) -> SqueezeFacePoseNet:
    return SqueezeFacePoseNet(**{"grouped": True, **kwargs})
