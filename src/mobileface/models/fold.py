"""Batch-norm folding for deployment.

In eval mode a batch norm is an affine map per channel, so it merges into the convolution or
linear layer before it. The folded model computes the same function with fewer parameters and
no normalisation layers; exporters and the runtime use it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
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


def _folded_pairs(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, conv or linear, bn) of every pair :func:`fold_batchnorm` would merge."""
    pairs = []
    for name, module in model.named_modules():
        bn = getattr(module, "bn", None)
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        for kind in ("conv", "linear"):
            layer = getattr(module, kind, None)
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.bias is None:
                pairs.append((f"{name}.{kind}" if name else kind, layer, bn))
                break
    return pairs


@torch.no_grad()
def unfold_batchnorm(
    model: nn.Module, folded_state: dict[str, torch.Tensor], batches: Iterable[torch.Tensor]
) -> None:
    """Load the weights of a BN-folded model (an ONNX export, say) into ``model``, which then
    computes the same function and can be trained again.

    Each folded ``y = W x + b`` becomes ``W x`` followed by a batch norm whose statistics are
    those of ``W x`` over ``batches`` (network inputs) and whose affine part restores ``b``:
    in eval mode the result is exact, in training mode the batch statistics start close to
    the stored ones, so the first steps do not undo what the weights know.
    Raises ``KeyError``/``RuntimeError`` when the weights do not fit ``model``.
    """
    pairs = _folded_pairs(model)
    paired = {f"{name}.{p}" for name, _, _ in pairs for p in ("weight", "bias")}
    own = {k: v for k, v in folded_state.items() if k not in paired}
    result = model.load_state_dict(own, strict=False)  # everything outside the pairs
    bn_keys = {f"{n.rsplit('.', 1)[0]}.bn.{k}" for n, _, bn in pairs for k in bn.state_dict()}
    if result.unexpected_keys or set(result.missing_keys) - bn_keys - paired:
        raise KeyError(
            f"folded weights do not fit: missing {sorted(set(result.missing_keys) - bn_keys)[:5]}"
            f", unexpected {result.unexpected_keys[:5]}"
        )
    sums: dict[str, list] = {}
    hooks = []
    for name, layer, bn in pairs:
        layer.weight.copy_(folded_state[f"{name}.weight"])
        bn.reset_parameters()
        bn.running_var.fill_(1 - bn.eps)  # ``W x + b`` until the statistics are in
        bn.bias.copy_(folded_state[f"{name}.bias"])

        def record(module: nn.Module, args: tuple, out: torch.Tensor, key: str = name) -> None:
            dims = [d for d in range(out.dim()) if d != 1]
            acc = sums.setdefault(key, [0, 0.0, 0.0])
            acc[0] += out.numel() // out.shape[1]
            acc[1] = acc[1] + out.double().sum(dims)
            acc[2] = acc[2] + out.double().pow(2).sum(dims)

        hooks.append(layer.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for name, _, bn in pairs:
        count, total, squares = sums[name]
        mean = total / count
        var = (squares / count - mean.pow(2)).clamp_min(0)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(folded_state[f"{name}.bias"].double() + mean)
