"""ONNX graph passes for deployment: PReLU rewritten for fast CPU runtimes, and a graph report.

Why rewrite PReLU? ``PRelu`` is a standard ONNX op, but ONNX Runtime's CPU kernel for it is
not vectorised (about 5 ns per element here, 18x its ``Relu``), cannot be fused into the
convolution before it, and forces a layout change around every use in the blocked (NCHWc)
convolution path: the 33 PReLUs of MobileFaceNet cost about 9 ms of a 13 ms fp32 run. In int8
it is worse: there is no quantised PReLU, so each one becomes dequantise -> PReLU -> quantise.

Written with ``Conv``, ``Relu`` and ``Add`` (exact algebra, no approximation), everything
fuses into the blocked convolutions. Three forms, all exact for a per-channel slope ``a``:

``fp32``   x' = (1-a)·x is folded into the producing Conv; y = DWConv1x1(x', a/(1-a)) + Relu(x')
           (the Add fuses into the convolution; one cheap Relu pass). Needs a <= 0.95 and a
           producing Conv used by this PReLU only.
``int8``   y = x + Relu(DWConv1x1(x, a-1)): one depthwise 1x1 with its Relu fused, one Add;
           the fewest quantised ops. Needs a < 1.
``exact``  y = x + DWConv1x1(Relu(DWConv1x1(x, -1)), 1-a): valid for every slope; the
           fallback for layers where the others do not apply.

A PReLU with one slope for all channels is a ``LeakyRelu`` and is written as one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

PRELU_FORMS = ("fp32", "int8", "exact")
FP32_MAX_SLOPE = 0.95


def decompose_prelu(model: onnx.ModelProto, form: str = "fp32") -> Counter:
    """Rewrite every ``PRelu`` of ``model`` in place; returns the forms used, counted.

    PReLUs whose slope is not a constant are left as they are (counted as ``kept``).
    """
    if form not in PRELU_FORMS:
        raise ValueError(f"unknown PReLU form {form!r}; choose from {', '.join(PRELU_FORMS)}")
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    uses: Counter = Counter(name for node in graph.node for name in node.input)
    uses.update(o.name for o in graph.output)
    replaced: dict[int, list[onnx.NodeProto]] = {}
    new_inits: list[onnx.TensorProto] = []
    counts: Counter = Counter()

    for index, node in enumerate(graph.node):
        if node.op_type != "PRelu":
            continue
        x, y = node.input[0], node.output[0]
        slope = constant_value(model, node.input[1], inits, producers)
        if slope is None:
            counts["kept"] += 1
            continue
        slope = slope.astype(np.float64)
        base = (node.name or y).strip("/").replace("/", "_") or f"prelu{index}"
        if slope.size == 1:
            alpha = float(slope.reshape(-1)[0])
            replaced[index] = [
                helper.make_node("LeakyRelu", [x], [y], alpha=alpha, name=f"{base}_leaky")
            ]
            counts["leaky"] += 1
            continue
        if sum(d != 1 for d in slope.shape) != 1 or (slope.ndim >= 3 and slope.shape[-1] != 1):
            counts["kept"] += 1  # not one slope per channel of an N x C x H x W tensor
            continue
        a = slope.reshape(-1)
        producer = producers.get(x)
        chosen = "exact"
        if form == "fp32" and np.all(a <= FP32_MAX_SLOPE) and _foldable(producer, x, uses, inits):
            chosen = "fp32"
        elif form == "int8" and np.all(a < 1.0):
            chosen = "int8"
        if chosen == "fp32":
            w_name, b_name = _scale_conv(producer, 1.0 - a, base, inits, new_inits)
            producer.input[1] = w_name
            if len(producer.input) > 2:
                producer.input[2] = b_name
            else:
                producer.input.append(b_name)
            relu, scaled = f"{base}_relu", f"{base}_scaled"
            replaced[index] = [
                helper.make_node("Relu", [x], [relu], name=relu),
                _depthwise(base, "slope", x, a / (1.0 - a), scaled, new_inits),
                helper.make_node("Add", [scaled, relu], [y], name=f"{base}_add"),
            ]
        elif chosen == "int8":
            neg = f"{base}_neg"
            replaced[index] = [
                _depthwise(base, "negslope", x, a - 1.0, f"{neg}_conv", new_inits),
                helper.make_node("Relu", [f"{neg}_conv"], [neg], name=f"{neg}_relu"),
                helper.make_node("Add", [x, neg], [y], name=f"{base}_add"),
            ]
        else:
            neg, scaled = f"{base}_neg", f"{base}_scaled"
            replaced[index] = [
                _depthwise(base, "negate", x, -np.ones_like(a), f"{neg}_conv", new_inits),
                helper.make_node("Relu", [f"{neg}_conv"], [neg], name=f"{neg}_relu"),
                _depthwise(base, "slope", neg, 1.0 - a, scaled, new_inits),
                helper.make_node("Add", [scaled, x], [y], name=f"{base}_add"),
            ]
        counts[chosen] += 1

    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        nodes.extend(replaced.get(index, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    remove_dead_nodes(model)
    remove_unused_initializers(model)
    return +counts


def constant_value(
    model: onnx.ModelProto,
    name: str,
    inits: dict[str, Any] | None = None,
    producers: dict[str, onnx.NodeProto] | None = None,
) -> np.ndarray | None:
    """The value of tensor ``name`` if it is constant: an initializer, a ``Constant`` node, or
    ``Identity`` of one (exporters share equal initializers through ``Identity`` nodes)."""
    inits = inits if inits is not None else {t.name: t for t in model.graph.initializer}
    if producers is None:
        producers = {out: n for n in model.graph.node for out in n.output}
    for _ in range(16):  # follow a short Identity chain
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
            return None
        if node.op_type != "Identity":
            return None
        name = node.input[0]
    return None


def _depthwise(
    base: str,
    suffix: str,
    inp: str,
    weights: np.ndarray,
    out: str,
    new_inits: list[onnx.TensorProto],
) -> onnx.NodeProto:
    """A 1x1 depthwise Conv multiplying channel ``c`` of ``inp`` by ``weights[c]``."""
    name = f"{base}_{suffix}"
    w = np.asarray(weights, np.float32).reshape(-1, 1, 1, 1)
    new_inits.append(numpy_helper.from_array(w, name))
    return helper.make_node(
        "Conv", [inp, name], [out], group=len(w), kernel_shape=[1, 1], name=f"{name}_conv"
    )


def _foldable(
    producer: onnx.NodeProto | None, x: str, uses: Counter, inits: dict[str, Any]
) -> bool:
    """Whether ``x`` comes from a Conv with constant weights used by nothing else."""
    return (
        producer is not None
        and producer.op_type == "Conv"
        and uses[x] == 1
        and producer.input[1] in inits
        and (len(producer.input) < 3 or producer.input[2] in inits)
    )


def _scale_conv(
    conv: onnx.NodeProto,
    scale: np.ndarray,
    base: str,
    inits: dict[str, Any],
    new_inits: list[onnx.TensorProto],
) -> tuple[str, str]:
    """New weight and bias names for ``conv`` with output channel ``c`` scaled by ``scale[c]``."""
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    if len(conv.input) > 2 and conv.input[2]:
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
    else:
        b = np.zeros(w.shape[0])
    if len(scale) != w.shape[0]:
        raise ValueError(f"{base}: {len(scale)} slopes for a conv with {w.shape[0]} outputs")
    w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    names = (f"{base}_conv_weight", f"{base}_conv_bias")
    new_inits.append(numpy_helper.from_array(w.astype(np.float32), names[0]))
    new_inits.append(numpy_helper.from_array((b * scale).astype(np.float32), names[1]))
    return names


def remove_dead_nodes(model: onnx.ModelProto) -> int:
    """Drop nodes whose outputs nothing reads (repeatedly); returns how many were dropped."""
    graph = model.graph
    dropped = 0
    while True:
        used = {name for node in graph.node for name in node.input}
        used.update(o.name for o in graph.output)
        keep = [n for n in graph.node if any(out in used for out in n.output)]
        if len(keep) == len(graph.node):
            return dropped
        dropped += len(graph.node) - len(keep)
        del graph.node[:]
        graph.node.extend(keep)


def remove_unused_initializers(model: onnx.ModelProto) -> int:
    """Drop initializers no node reads; returns how many were dropped."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used.update(o.name for o in graph.output)
    keep = [t for t in graph.initializer if t.name in used]
    dropped = len(graph.initializer) - len(keep)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return dropped


def graph_report(model: onnx.ModelProto) -> dict[str, Any]:
    """Op counts, opset, and how the mobile-unfriendly layers came out (PReLU, GDConv).

    A GDConv is a depthwise ``Conv`` (``group`` = channels) whose kernel is larger than 3x3
    with no padding: the global depthwise convolution of MobileFaceNets' head.
    """
    inits = {t.name: t for t in model.graph.initializer}
    ops = Counter(node.op_type for node in model.graph.node)
    gdconv = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        dims = list(inits[node.input[1]].dims)
        kernel = list(attrs.get("kernel_shape", dims[2:]))
        group = int(attrs.get("group", 1))
        if group > 1 and group == dims[0] and dims[1] == 1 and min(kernel) > 3:
            gdconv.append({"name": node.name, "channels": group, "kernel": kernel})
    standard = all(node.domain in ("", "ai.onnx") for node in model.graph.node)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {
        "opset": opset,
        "ops": dict(sorted(ops.items())),
        "prelu_ops": ops.get("PRelu", 0),
        "gdconv": gdconv,
        "standard_ops_only": standard,
    }
