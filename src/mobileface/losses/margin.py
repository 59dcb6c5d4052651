"""Margin-based softmax losses as one combined margin (InsightFace's formulation).

For the logit of the true class, with ``theta`` the angle between an embedding and its class
centre::

    target = cos(m1 * theta + m2) - m3

SphereFace is ``(m1, 0, 0)``, ArcFace ``(1, m2, 0)``, CosFace ``(1, 0, m3)``; all logits are
scaled by ``s``. Two safeguards keep small networks such as MobileFaceNet from going NaN:
cosines are clamped away from +-1 before ``acos`` (whose gradient is infinite there), and
when ``m1 * theta + m2`` passes pi, where ``cos`` would turn back up and reward a *larger*
angle, the target follows SphereFace's monotone extension ``(-1)^k cos(a) - 2k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Keep acos' gradient finite: 1 / sqrt(1 - x^2) at x = 1 - EPS is about 2e3 in fp32.
COS_EPS = 1e-6


@dataclass(frozen=True)
class Margin:
    """Combined margin parameters: scale ``s`` and margins ``m1`` (multiplicative angular),
    ``m2`` (additive angular) and ``m3`` (additive cosine)."""

    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.5
    m3: float = 0.0

    @classmethod
    def preset(cls, name: str, s: float = 64.0) -> Margin:
        """The usual settings: ``arcface``, ``cosface``, ``sphereface``, ``normface``."""
        presets = {
            "arcface": cls(s, 1.0, 0.5, 0.0),
            "cosface": cls(s, 1.0, 0.0, 0.35),
            "sphereface": cls(s, 1.35, 0.0, 0.0),
            "normface": cls(s, 1.0, 0.0, 0.0),
        }
        try:
            return presets[name]
        except KeyError:
            raise ValueError(
                f"unknown margin preset {name!r}; expected {sorted(presets)}"
            ) from None

    @property
    def is_angular(self) -> bool:
        return self.m1 != 1.0 or self.m2 != 0.0


def target_logit(cosine: torch.Tensor, margin: Margin) -> torch.Tensor:
    """The margin-penalised cosine of the true class (before scaling by ``s``)."""
    if not margin.is_angular:
        return cosine - margin.m3
    theta = torch.acos(cosine.clamp(-1 + COS_EPS, 1 - COS_EPS))
    angle = margin.m1 * theta + margin.m2
    k = torch.floor(angle / math.pi).detach()
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    return sign * torch.cos(angle) - 2.0 * k - margin.m3


def apply_margin(
    cosines: torch.Tensor, labels: torch.Tensor, margin: Margin, ignore_index: int = -1
) -> torch.Tensor:
    """Scaled logits: the true class's cosine replaced by its penalised value.

    ``labels`` index columns of ``cosines``; rows labelled ``ignore_index`` (their class lives
    on another rank under Partial FC) keep plain cosines.
    """
    logits = cosines.clone()
    rows = torch.nonzero(labels != ignore_index, as_tuple=True)[0]
    cols = labels[rows]
    logits[rows, cols] = target_logit(cosines[rows, cols], margin)
    return logits * margin.s
