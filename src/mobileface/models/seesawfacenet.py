"""SeesawFaceNets (Zhang 2019, arXiv:1908.09124).

SeesawFaceNet keeps MobileFaceNet's layer table and replaces every bottleneck with a *seesaw
block*: the 1x1 expansion and projection are split unevenly into two groups (a quarter and
three quarters of the channels), which cuts their cost to 10/16; a channel shuffle (or, in the
"share" variant, an offset split of the projection) lets the groups exchange information;
a squeeze-and-excitation layer (reduction 4) follows the depthwise conv; swish is the
non-linearity. The head is conv1x1 128->512, linear GDConv 7x7 and a linear 512->512 with BN.

DW-SeesawFaceNet is the wider, deeper model of the same paper (stem 96 channels, stages of
9/1/12/1/4 blocks at 96/192 channels). Its stride-2 blocks add a shortcut: a 1x1 conv with
stride 2 (v1) or a 2x2 max pool followed by a 1x1 conv (v2).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import (
    ChannelShuffle,
    ConvBNAct,
    EmbeddingHead,
    GDConv,
    LinearBN,
    SqueezeExcite,
    make_stages,
)
from .mobilefacenet import MOBILEFACENET_STAGES, init_weights
from .registry import register_model

PAPER = "SeesawFaceNets (Zhang 2019, arXiv:1908.09124)"

# DW-SeesawFaceNet: (t, c, n, s) read from the paper's DW model (stem 96 channels).
DW_SEESAW_STAGES = [(2, 96, 9, 2), (4, 192, 1, 2), (2, 192, 12, 1), (4, 192, 1, 2), (2, 192, 4, 1)]


class UnevenPointwise(nn.Module):
    """A 1x1 conv in two uneven groups: channels ``[:split_in]`` map to ``[:split_out]``."""

    def __init__(
        self, in_channels: int, out_channels: int, split_in: int, split_out: int, act: str
    ) -> None:
        super().__init__()
        self.split_in = split_in
        self.first = ConvBNAct(split_in, split_out, 1, act=act)
        self.second = ConvBNAct(in_channels - split_in, out_channels - split_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.first(x[:, : self.split_in]), self.second(x[:, self.split_in :])), 1)


class SeesawBlock(nn.Module):
    """Seesaw bottleneck: uneven 1x1 expansion, mixing, depthwise 3x3, SE, uneven projection.

    Args:
        mixing: "shuffle" (channel shuffle with 2 groups after the expansion) or "share"
            (no shuffle; the projection splits at three quarters instead of one quarter, so
            its groups straddle the expansion's).
        shortcut: for blocks without an identity residual: None (no shortcut), "conv"
            (1x1 conv with the block's stride) or "pool_conv" (2x2 max pool, then 1x1 conv).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expansion: int,
        mixing: str = "shuffle",
        shortcut: str | None = None,
        act: str = "swish",
    ) -> None:
        super().__init__()
        if mixing not in ("shuffle", "share"):
            raise ValueError(f"mixing must be 'shuffle' or 'share', not {mixing!r}")
        hidden = in_channels * expansion
        self.expand = UnevenPointwise(in_channels, hidden, in_channels // 4, hidden // 4, act)
        self.mix = ChannelShuffle(2) if mixing == "shuffle" else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, reduction=4)
        if mixing == "shuffle":
            split_in, split_out = hidden // 4, out_channels // 4
        else:
            split_in, split_out = hidden * 3 // 4, out_channels * 3 // 4
        self.project = UnevenPointwise(hidden, out_channels, split_in, split_out, act="none")
        self.identity = stride == 1 and in_channels == out_channels
        self.shortcut = None
        if not self.identity and shortcut == "conv":
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, stride, act=act)
        elif not self.identity and shortcut == "pool_conv":
            self.shortcut = nn.Sequential(
                nn.MaxPool2d(stride, stride), ConvBNAct(in_channels, out_channels, 1, act=act)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.mix(self.expand(x)))))
        if self.identity:
            return x + out
        return out if self.shortcut is None else out + self.shortcut(x)


class SeesawFaceNet(nn.Module):
    """MobileFaceNet's layout with seesaw blocks and a 512-d linear embedding."""

    def __init__(
        self,
        input_size: tuple[int, int] = (112, 112),
        embedding_size: int = 512,
        mixing: str = "shuffle",
        stem_channels: int = 64,
        stages: list[tuple[int, int, int, int]] | None = None,
        shortcut: str | None = None,
        head_channels: int = 512,
    ) -> None:
        super().__init__()
        h, w = input_size
        if h % 16 or w % 16:
            raise ValueError(f"input_size {input_size} must be a multiple of 16 on both sides")
        self.input_size = (h, w)
        self.embedding_size = embedding_size
        act = "swish"
        self.stem = nn.Sequential(
            ConvBNAct(3, stem_channels, 3, 2, act=act),
            ConvBNAct(stem_channels, stem_channels, 3, 1, groups=stem_channels, act=act),
        )
        self.stages, channels = make_stages(
            SeesawBlock,
            stem_channels,
            stages or MOBILEFACENET_STAGES,
            mixing=mixing,
            shortcut=shortcut,
            act=act,
        )
        self.head = nn.Sequential(
            ConvBNAct(channels, head_channels, 1, act=act),
            GDConv(head_channels, (h // 16, w // 16)),
            EmbeddingHead(),
            LinearBN(head_channels, embedding_size),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


_SEESAW = {"params": 1_300_000, "madds": 146_000_000}
_DW = {"params": 4_200_000, "madds": 526_000_000}


@register_model(
    "seesaw_shufflefacenet",
    family="seesawfacenet",
    input_size=(112, 112),
    embedding_size=512,
    paper=PAPER,
    description="SeesawFaceNet, shuffle variant: 1.3M params, 146M MAdds (paper)",
    paper_figures=_SEESAW,
)
def seesaw_shufflefacenet(**kwargs: object) -> SeesawFaceNet:
    return SeesawFaceNet(**{"mixing": "shuffle", **kwargs})


@register_model(
    "seesaw_sharefacenet",
    family="seesawfacenet",
    input_size=(112, 112),
    embedding_size=512,
    paper=PAPER,
    description="SeesawFaceNet, share variant (offset projection split, no shuffle)",
    paper_figures=_SEESAW,
)
def seesaw_sharefacenet(**kwargs: object) -> SeesawFaceNet:
    return SeesawFaceNet(**{"mixing": "share", **kwargs})


def _dw_seesaw(shortcut: str, **kwargs: object) -> SeesawFaceNet:
    config = {"stem_channels": 96, "stages": DW_SEESAW_STAGES, "shortcut": shortcut}
    return SeesawFaceNet(**{**config, **kwargs})


@register_model(
    "dw_seesawfacenet_v1",
    family="seesawfacenet",
    input_size=(112, 112),
    embedding_size=512,
    paper=PAPER,
    description="DW-SeesawFaceNet v1: strided 1x1 conv shortcuts (paper: 4.2M, 526M MAdds)",
    paper_figures=_DW,
)
def dw_seesawfacenet_v1(**kwargs: object) -> SeesawFaceNet:
    return _dw_seesaw("conv", **kwargs)


@register_model(
    "dw_seesawfacenet_v2",
    family="seesawfacenet",
    input_size=(112, 112),
    embedding_size=512,
    paper=PAPER,
    description="DW-SeesawFaceNet v2: max-pool + 1x1 conv shortcuts (paper: 4.2M, 526M MAdds)",
    paper_figures=_DW,
)
def dw_seesawfacenet_v2(**kwargs: object) -> SeesawFaceNet:
    return _dw_seesaw("pool_conv", **kwargs)
