"""ONNX export of zoo models: batch norm folded, dynamic batch, metadata embedded, parity checked.

:func:`export_onnx` writes a model the runtime opens with nothing else to go on: input size,
normalisation, embedding size and calibrated thresholds travel in the file's metadata (see
:mod:`mobileface.runtime.metadata`). PReLU is rewritten with ``Conv``/``Relu``/``Add`` by
default, exactly, because ONNX Runtime runs the ``PRelu`` op 3x slower than the whole rest of
the network (see :mod:`mobileface.export.graph`); ``prelu="keep"`` leaves the op for
runtimes with a fast native PReLU. :func:`parity_check` compares a file with the PyTorch model.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from mobileface.errors import ModelFileError
from mobileface.models.fold import fold_batchnorm
from mobileface.runtime.metadata import PREFIX, decode_metadata, encode_metadata
from mobileface.runtime.preprocess import Normalization

from .graph import PRELU_FORMS, decompose_prelu

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
PRELU_MODES = ("decompose", "keep", *PRELU_FORMS)
FP32_MIN_COSINE = 0.9999
"""Parity an fp32 export must reach against PyTorch (worst cosine over the check batch)."""


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    fold_bn: bool = True,
    dynamic_batch: bool = True,
    prelu: str = "decompose",
    metadata: dict[str, Any] | None = None,
    thresholds: dict[str, float] | None = None,
    normalization: Normalization | None = None,
) -> Path:
    """Write ``model`` (input ``N x 3 x H x W``, output ``N x D``) to ``path`` as ONNX.

    The model is exported in eval mode with its batch norms folded into the convolutions.
    Input and output are named ``input`` and ``embedding``; the batch axis is dynamic.

    Args:
        prelu: ``decompose`` (the ``fp32`` form of :func:`~.graph.decompose_prelu`), ``keep``,
            or a form name (``int8`` is what :mod:`~.quantize` wants).
        metadata: extra ``mobileface.*`` entries (override the ones derived from the model).
        thresholds: calibrated thresholds, ``{"far_1e-3": t, "far_1e-4": t}``.
        normalization: the input scaling the model was trained with (default 127.5/128 RGB).

    The file is written atomically (a temporary file renamed over ``path``).
    """
    if prelu not in PRELU_MODES:
        raise ValueError(f"prelu must be one of {', '.join(PRELU_MODES)}, not {prelu!r}")
    path = Path(path)
    deploy = fold_batchnorm(model) if fold_bn else model.eval()
    h, w = model.input_size
    dummy = torch.zeros(1, 3, h, w)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            deploy,
            (dummy,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    has_prelu = any(node.op_type == "PRelu" for node in proto.graph.node)
    prelu_state = "none"
    if has_prelu:
        if prelu == "keep":
            prelu_state = "kept"
        else:
            decompose_prelu(proto, "fp32" if prelu == "decompose" else prelu)
            prelu_state = "decomposed"
    values = model_metadata(
        model, thresholds=thresholds, normalization=normalization, prelu=prelu_state
    )
    values.update(metadata or {})
    set_metadata(proto, values)
    onnx.checker.check_model(proto)
    save_model(proto, path)
    return path


def model_metadata(
    model: nn.Module,
    *,
    thresholds: dict[str, float] | None = None,
    normalization: Normalization | None = None,
    precision: str = "fp32",
    prelu: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The ``mobileface.*`` metadata describing ``model`` (see ``runtime.metadata``)."""
    from mobileface import __version__

    norm = normalization or Normalization()
    return {
        "architecture": getattr(model, "model_name", type(model).__name__),
        "model_kwargs": dict(getattr(model, "model_kwargs", {}) or {}) or None,
        "input_size": [int(v) for v in model.input_size],
        "embedding_size": int(model.embedding_size),
        "mean": norm.to_dict()["mean"],
        "std": norm.to_dict()["std"],
        "bgr": norm.bgr,
        "thresholds": dict(thresholds) if thresholds else None,
        "version": __version__,
        "precision": precision,
        "prelu": prelu,
        "source": source,
    }


def set_metadata(proto: onnx.ModelProto, values: dict[str, Any]) -> None:
    """Replace ``proto``'s ``mobileface.*`` metadata by ``values`` (other entries are kept)."""
    merged = {p.key: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    for key, value in values.items():  # None removes an entry
        if value is None:
            merged.pop(key if key.startswith(PREFIX) else PREFIX + key, None)
        else:
            merged.update(encode_metadata({key: value}))
    others = [p for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(others)
    for key in sorted(merged):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, merged[key]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded ``mobileface.*`` metadata of an ONNX file (without loading its weights)."""
    proto = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in proto.metadata_props})


def read_folded_weights(path: str | Path) -> tuple[str | None, dict[str, torch.Tensor]]:
    """The architecture (from our metadata, None for other files) and the BN-folded weights
    (initializers by name) of an fp32 ONNX export; int8 exports cannot be read back."""
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for corrupt files
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc})") from None
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props})
    if str(meta.get("precision", "fp32")) != "fp32":
        raise ModelFileError(f"{path}: a {meta['precision']} model; only fp32 weights read back")
    weights = {
        init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in proto.graph.initializer
    }
    return meta.get("architecture"), weights


def update_metadata(path: str | Path, values: dict[str, Any]) -> None:
    """Set ``mobileface.*`` entries of an existing ONNX file in place (atomically)."""
    proto = onnx.load(str(path))
    set_metadata(proto, values)
    save_model(proto, Path(path))


def save_model(proto: onnx.ModelProto, path: Path) -> None:
    """``onnx.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class ParityReport:
    """How closely an exported file reproduces the PyTorch model on ``n`` inputs."""

    n: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    inputs: str

    def ok(self, min_cosine: float = FP32_MIN_COSINE) -> bool:
        return self.min_cosine >= min_cosine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"cosine min {self.min_cosine:.6f} / mean {self.mean_cosine:.6f}, max |diff| "
            f"{self.max_abs_diff:.2e} over {self.n} {self.inputs}"
        )


def parity_check(
    model: nn.Module,
    onnx_path: str | Path,
    inputs: np.ndarray | torch.Tensor | None = None,
    *,
    batch: int = 8,
    seed: int = 0,
    threads: int = 1,
) -> ParityReport:
    """Run ``model`` (PyTorch, eval mode) and the ONNX file on the same inputs and compare.

    ``inputs`` is an ``N x 3 x H x W`` float batch already normalised (e.g. real face crops
    through :class:`~mobileface.runtime.preprocess.Normalization`); by default ``batch``
    random images in the normalised range. Cosines are between raw embeddings, per input.
    """
    from mobileface.runtime.embedder import open_session

    h, w = model.input_size
    label = "given inputs"
    if inputs is None:
        gen = torch.Generator().manual_seed(seed)
        inputs = torch.rand(batch, 3, h, w, generator=gen) * 2 - 1
        label = "random inputs"
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy().astype(np.float64)
    model.train(was_training)
    session = open_session(onnx_path, threads)
    name = session.get_inputs()[0].name
    got = np.asarray(session.run(None, {name: x.numpy()})[0], dtype=np.float64)
    got = got.reshape(len(x), -1)
    cos = np.sum(expected * got, axis=1) / np.maximum(
        np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1), 1e-12
    )
    return ParityReport(
        n=len(x),
        max_abs_diff=float(np.abs(expected - got).max()),
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        inputs=label,
    )


def calibrate_batchnorm(model: nn.Module, *, batches: int = 2, batch: int = 8, seed: int = 0):
    """Give a freshly built model batch-norm statistics measured on random images.

    A random-init model has running statistics (0, 1) that make its activations grow or
    vanish layer after layer (and denormal floats are slow on CPUs); speed and structure
    checks of a random-init export should measure a network that behaves like a trained one.
    Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    h, w = model.input_size
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(batch, 3, h, w, generator=gen) * 2 - 1)
    return model.eval()


def load_for_export(spec: str | Path) -> tuple[nn.Module, str, dict[str, float]]:
    """``(model, source, thresholds)`` for a zoo name (random init, BN calibrated) or a
    training checkpoint; thresholds come from a model card ``CHECKPOINT.json`` beside it."""
    from mobileface.errors import ModelFileError
    from mobileface.models import create_model, list_models
    from mobileface.runtime.metadata import metadata_thresholds

    text = str(spec)
    if Path(text).suffix.lower() in (".pt", ".pth"):
        from mobileface.models.checkpoint import load_model_checkpoint
        from mobileface.weights import load_model_card

        model = load_model_checkpoint(text)
        return model, Path(text).name, metadata_thresholds(load_model_card(text))
    if text in list_models():
        return calibrate_batchnorm(create_model(text)), "random init", {}
    raise ModelFileError(
        f"{text!r} is neither a training checkpoint (.pt) nor a zoo model (see 'mobileface models')"
    )
