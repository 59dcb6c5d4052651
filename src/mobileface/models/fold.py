"""Batch-norm folding for deployment.

In eval mode a batch norm is an affine map per channel, so it merges into the convolution or
linear layer before it. The folded model computes the same function with fewer parameters and
no normalisation layers; exporters and the runtime use it.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every ``conv``/``linear`` + ``bn`` pair merged.

    Blocks opt in by naming their children ``conv`` (or ``linear``) and ``bn``, as all the
    blocks of :mod:`mobileface.models.blocks` do. The input model is left untouched.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        bn = getattr(module, "bn", None)
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        if isinstance(getattr(module, "conv", None), nn.Conv2d):
            module.conv = fuse_conv_bn_eval(module.conv, bn)
        elif isinstance(getattr(module, "linear", None), nn.Linear):
            module.linear = fuse_linear_bn_eval(module.linear, bn)
        else:
            continue
        module.bn = nn.Identity()
    return folded
