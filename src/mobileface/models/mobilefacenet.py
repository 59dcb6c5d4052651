"""MobileFaceNets (Chen et al., 2018, arXiv:1804.07573).

Table 1 of the paper, for a 112x112 input:

=========  ===================  ===  ====  ==  ==
input      operator              t    c    n   s
=========  ===================  ===  ====  ==  ==
112x112x3  conv3x3               -    64   1   2
56x56x64   depthwise conv3x3     -    64   1   1
56x56x64   bottleneck            2    64   5   2
28x28x64   bottleneck            4    128  1   2
14x14x128  bottleneck            2    128  6   1
14x14x128  bottleneck            4    128  1   2
7x7x128    bottleneck            2    128  2   1
7x7x128    conv1x1               -    512  1   1
7x7x512    linear GDConv7x7      -    512  1   1
1x1x512    linear conv1x1        -    128  1   1
=========  ===================  ===  ====  ==  ==

PReLU is the non-linearity and every convolution is followed by batch norm. The variants of
the paper's Section 4 drop parts of the head: MobileFaceNet-M has no linear 1x1 after the
GDConv (512-d output), MobileFaceNet-S also drops the 1x1 conv before it (the GDConv then runs
on 128 channels, 128-d output).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNAct, EmbeddingHead, GDConv, InvertedResidual, make_stages
from .registry import register_model

PAPER = "MobileFaceNets (Chen et al. 2018, arXiv:1804.07573)"

# (expansion t, output channels c, repeats n, stride s) from Table 1.
MOBILEFACENET_STAGES = [
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
]


class MobileFaceNet(nn.Module):
    """The MobileFaceNet family: stem, inverted-residual stages, GDConv head.

    Args:
        input_size: (height, width) of the aligned face; the GDConv kernel follows the
            feature map, which is ``input_size / 16``.
        embedding_size: width of the final linear 1x1 conv (ignored when ``linear_head`` is
            False: the embedding is then the GDConv output).
        act: non-linearity of the non-linear layers ("prelu" in the paper).
        conv_head: keep the 1x1 conv to ``head_channels`` before the GDConv.
        linear_head: keep the linear 1x1 conv (with BN) after the GDConv.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (112, 112),
        embedding_size: int = 128,
        act: str = "prelu",
        conv_head: bool = True,
        linear_head: bool = True,
        head_channels: int = 512,
        stages: list[tuple[int, int, int, int]] | None = None,
    ) -> None:
        super().__init__()
        h, w = input_size
        if h % 16 or w % 16:
            raise ValueError(f"input_size {input_size} must be a multiple of 16 on both sides")
        self.input_size = (h, w)
        self.stem = nn.Sequential(
            ConvBNAct(3, 64, 3, 2, act=act),
            ConvBNAct(64, 64, 3, 1, groups=64, act=act),
        )
        self.stages, channels = make_stages(
            InvertedResidual, 64, stages or MOBILEFACENET_STAGES, act=act
        )
        head: list[nn.Module] = []
        if conv_head:
            head.append(ConvBNAct(channels, head_channels, 1, act=act))
            channels = head_channels
        head.append(GDConv(channels, (h // 16, w // 16)))
        if linear_head:
            head.append(ConvBNAct(channels, embedding_size, 1, act="none"))
            channels = embedding_size
        head.append(EmbeddingHead())
        self.head = nn.Sequential(*head)
        self.embedding_size = channels
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out), unit BN, small linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


_FIGURES = {"params_folded": 993_344, "madds": 220_965_376}


@register_model(
    "mobilefacenet",
    family="mobilefacenet",
    input_size=(112, 112),
    embedding_size=128,
    paper=PAPER,
    description="MobileFaceNet, Table 1: 0.99M params, 221M MAdds, 128-d",
    paper_figures={"params": 1_003_136, **_FIGURES},
)
def mobilefacenet(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**kwargs)


@register_model(
    "mobilefacenet_112x96",
    family="mobilefacenet",
    input_size=(112, 96),
    embedding_size=128,
    paper=PAPER,
    description="MobileFaceNet on 112x96 crops (GDConv 7x6)",
)
def mobilefacenet_112x96(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**{"input_size": (112, 96), **kwargs})


@register_model(
    "mobilefacenet_96x96",
    family="mobilefacenet",
    input_size=(96, 96),
    embedding_size=128,
    paper=PAPER,
    description="MobileFaceNet on 96x96 crops (GDConv 6x6)",
)
def mobilefacenet_96x96(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**{"input_size": (96, 96), **kwargs})


@register_model(
    "mobilefacenet_m",
    family="mobilefacenet",
    input_size=(112, 112),
    embedding_size=512,
    paper=PAPER,
    description="MobileFaceNet-M: no linear 1x1 after GDConv, 512-d (paper: 0.92M)",
    paper_figures={"params_folded": 920_000},
)
def mobilefacenet_m(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**{"linear_head": False, **kwargs})


@register_model(
    "mobilefacenet_s",
    family="mobilefacenet",
    input_size=(112, 112),
    embedding_size=128,
    paper=PAPER,
    description="MobileFaceNet-S: no 1x1 convs around GDConv, 128-d (paper: 0.84M)",
    paper_figures={"params_folded": 840_000},
)
def mobilefacenet_s(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**{"conv_head": False, "linear_head": False, **kwargs})


@register_model(
    "mobilefacenet_relu",
    family="mobilefacenet",
    input_size=(112, 112),
    embedding_size=128,
    paper=PAPER,
    description="MobileFaceNet with ReLU instead of PReLU (the paper's ablation): ReLU fuses "
    "into ONNX Runtime's fp32 and int8 convolutions, PReLU does not",
)
def mobilefacenet_relu(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**{"act": "relu", **kwargs})


@register_model(
    "mobilefacenet_prelu_shared",
    family="mobilefacenet",
    input_size=(112, 112),
    embedding_size=128,
    paper=PAPER,
    description="MobileFaceNet with one PReLU slope per layer: exports as fused LeakyRelu",
)
def mobilefacenet_prelu_shared(**kwargs: object) -> MobileFaceNet:
    return MobileFaceNet(**{"act": "prelu_shared", **kwargs})
