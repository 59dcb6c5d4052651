"""MobileNetV2 baselines of MobileFaceNets' Table 2 (Sandler et al. 2018, arXiv:1801.04381).

Our reading of the paper (Chen et al. 2018, Sections 3.2 and 4.1): the baselines are the
standard MobileNetV2 body (width 1.0, expansion 6, ReLU6, MobileNetV2's Table 2) with the first
convolution's stride set to 1 because faces come in at 112x112, which leaves a 7x7 map (total
stride 16). The paper compares heads on the same body, so the head follows MobileFaceNet's:
a 1x1 conv to 512 channels, then global average pooling (``mobilenetv2``) or a linear GDConv 7x7
(``mobilenetv2_gdconv``), then a linear 1x1 conv with batch norm to the 128-d embedding.

The paper gives about 2.1M parameters for both baselines and does not print their head. With
the 1x1 conv at 512 channels we count 2.04M (average pooling) and 2.07M (GDConv); with
MobileNetV2's own 1280 channels it would be 2.39M and 2.45M, well off the paper's figure, so
we read the head as 512 wide. ``last_channels=1280`` builds the other reading.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNAct, EmbeddingHead, GDConv, InvertedResidual, make_stages
from .mobilefacenet import init_weights
from .registry import register_model

PAPER = "MobileFaceNets Table 2 baselines; MobileNetV2 (Sandler et al. 2018, arXiv:1801.04381)"

# (t, c, n, s) of MobileNetV2's Table 2.
MOBILENETV2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(nn.Module):
    """MobileNetV2 as a face embedder: stride-1 stem, 1x1 conv to ``last_channels``, then
    global average pooling (``pool="avg"``) or a linear GDConv (``pool="gdconv"``), then a
    linear 1x1 conv with BN to ``embedding_size``.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (112, 112),
        embedding_size: int = 128,
        pool: str = "avg",
        last_channels: int = 512,
    ) -> None:
        super().__init__()
        h, w = input_size
        if h % 16 or w % 16:
            raise ValueError(f"input_size {input_size} must be a multiple of 16 on both sides")
        if pool not in ("avg", "gdconv"):
            raise ValueError(f"pool must be 'avg' or 'gdconv', not {pool!r}")
        self.input_size = (h, w)
        self.embedding_size = embedding_size
        self.stem = ConvBNAct(3, 32, 3, 1, act="relu6")
        self.stages, channels = make_stages(InvertedResidual, 32, MOBILENETV2_STAGES, act="relu6")
        pooling = (
            nn.AdaptiveAvgPool2d(1) if pool == "avg" else GDConv(last_channels, (h // 16, w // 16))
        )
        self.head = nn.Sequential(
            ConvBNAct(channels, last_channels, 1, act="relu6"),
            pooling,
            ConvBNAct(last_channels, embedding_size, 1, act="none"),
            EmbeddingHead(),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@register_model(
    "mobilenetv2",
    family="mobilenetv2",
    input_size=(112, 112),
    embedding_size=128,
    paper=PAPER,
    description="MobileNetV2 baseline: stride-1 stem, global average pooling, 128-d",
    paper_figures={"params": 2_100_000},
)
def mobilenetv2(**kwargs: object) -> MobileNetV2:
    return MobileNetV2(**{"pool": "avg", **kwargs})


@register_model(
    "mobilenetv2_gdconv",
    family="mobilenetv2",
    input_size=(112, 112),
    embedding_size=128,
    paper=PAPER,
    description="MobileNetV2 baseline with a linear GDConv 7x7 head, 128-d",
    paper_figures={"params": 2_100_000},
)
def mobilenetv2_gdconv(**kwargs: object) -> MobileNetV2:
    return MobileNetV2(**{"pool": "gdconv", **kwargs})
