"""Training losses: the combined margin (SphereFace, ArcFace, CosFace), Partial FC class
centres, a plain softmax baseline and embedding distillation."""

from .margin import Margin, apply_margin, target_logit
from .partial_fc import PartialFC, SoftmaxHead, shard_range, sum_gradients_hook

__all__ = [
    "Margin",
    "PartialFC",
    "SoftmaxHead",
    "apply_margin",
    "shard_range",
    "sum_gradients_hook",
    "target_logit",
]
