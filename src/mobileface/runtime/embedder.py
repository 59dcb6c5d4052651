"""Face embedders: aligned crops in, one raw embedding per crop out.

:class:`OnnxEmbedder` runs any ONNX face embedder on ONNX Runtime (ours carry their input
size, normalisation and thresholds in the file; other projects' models are described with
``input_size``/``normalization``). :func:`open_embedder` opens a model from what a user types:
a bundled weights name, ``dlib`` (dlib's ResNet), a ``.onnx`` path, an OpenVINO IR ``.xml`` (run by
:class:`~mobileface.runtime.openvino_embedder.OpenVINOEmbedder`), or a training checkpoint
(``.pt``/``.pth``, which needs PyTorch and is run by
:class:`mobileface.export.torch_embedder.TorchEmbedder`).

Embeddings are returned raw (not L2-normalised); see :mod:`mobileface.runtime.scoring`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mobileface.errors import ModelFileError

from .metadata import decode_metadata, metadata_thresholds
from .preprocess import Normalization, as_crop_batch

CHECKPOINT_SUFFIXES = (".pt", ".pth")
OPENVINO_SUFFIX = ".xml"
DLIB_SPEC = "dlib"  # dlib's ResNet (mobileface.runtime.dlib_embedder)


@runtime_checkable
class Embedder(Protocol):
    """What every embedder offers: its input and output, and ``embed``."""

    name: str
    input_size: tuple[int, int]
    embedding_size: int
    normalization: Normalization

    def embed(self, crops: Any) -> np.ndarray:
        """``N`` aligned ``H x W x 3`` uint8 RGB crops -> ``N x D`` float32 raw embeddings."""
        ...


def session_options(threads: int = 1) -> Any:
    """ONNX Runtime options used everywhere: ``threads`` intra-op threads, sequential, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def open_session(path: str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session on ``path``; :class:`ModelFileError` if it cannot be opened."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        return ort.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises several types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a usable ONNX model ({reason})") from None


class OnnxEmbedder:
    """A face embedder run by ONNX Runtime on the CPU.

    Args:
        path: the ``.onnx`` file; its one input must be ``N x 3 x H x W`` float, its output
            ``N x D`` (``N x D x 1 x 1`` is accepted).
        threads: intra-op threads of the session.
        batch_size: most crops sent to the network in one call.
        normalization: input scaling; default: the file's metadata, else ``127.5/128`` RGB.
        input_size: ``(height, width)`` of the crops; default: the file's fixed input size,
            else its metadata. Needed for a file with neither.

    Raises :class:`ModelFileError` for a missing, corrupt or non-embedder file, and when the
    network does not run at ``input_size``. Thread-safe: ``embed`` may be called from several
    threads at once.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int = 1,
        batch_size: int = 32,
        normalization: Normalization | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.threads = max(1, int(threads))
        self.batch_size = max(1, int(batch_size))
        self.session = open_session(self.path, self.threads)
        self.metadata: dict[str, Any] = decode_metadata(
            self.session.get_modelmeta().custom_metadata_map or {}
        )
        self.name: str = self.path.stem
        self.architecture: str | None = self.metadata.get("architecture")
        self.precision: str = str(self.metadata.get("precision", "fp32"))
        self.thresholds: dict[str, float] = metadata_thresholds(self.metadata)
        self.thresholds_source = "model metadata" if self.thresholds else ""
        self._check_io(input_size)
        self.normalization = normalization or self._metadata_normalization()
        self.embedding_size = self._probe()

    def __repr__(self) -> str:
        h, w = self.input_size
        return (
            f"OnnxEmbedder({str(self.path)!r}, input={h}x{w}, dim={self.embedding_size}, "
            f"threads={self.threads})"
        )

    @property
    def sha256(self) -> str:
        """SHA-256 of the model file (computed once)."""
        if not hasattr(self, "_sha256"):
            from mobileface.paths import sha256_of

            self._sha256 = sha256_of(self.path)
        return self._sha256

    def _check_io(self, input_size: tuple[int, int] | None) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        where = f"{self.path}: not a face embedder"
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelFileError(
                f"{where}: it takes {len(inputs)} inputs ({names}); an embedder takes one "
                "N x 3 x H x W image batch"
            )
        inp = inputs[0]
        shape = list(inp.shape)
        channels_ok = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))
        if inp.type != "tensor(float)" or not channels_ok:
            raise ModelFileError(
                f"{where}: its input {inp.name!r} is {inp.type} of shape {_shape(shape)}; an "
                "embedder takes float N x 3 x H x W images"
            )
        if len(outputs) < 1 or len(outputs[0].shape or []) not in (2, 4):
            out = outputs[0] if outputs else None
            raise ModelFileError(
                f"{where}: its output {getattr(out, 'name', '?')!r} has shape "
                f"{_shape(getattr(out, 'shape', []))}; an embedder returns N x D embeddings"
            )
        self.input_name = inp.name
        self.output_name = outputs[0].name
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        static = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:]) else None
        meta_size = self.metadata.get("input_size")
        meta = tuple(int(v) for v in meta_size) if isinstance(meta_size, list) else None
        if input_size is not None:
            wanted = (int(input_size[0]), int(input_size[1]))
            if static is not None and wanted != tuple(static):
                raise ModelFileError(
                    f"{self.path}: the network takes {static[0]}x{static[1]} inputs, not "
                    f"{wanted[0]}x{wanted[1]}"
                )
            self.input_size = wanted
        elif static is not None:
            self.input_size = (int(static[0]), int(static[1]))
        elif meta is not None and len(meta) == 2:
            self.input_size = (meta[0], meta[1])
        else:
            raise ModelFileError(
                f"{self.path}: the input size is not fixed in the file and not in its metadata: "
                "give it (input_size=(H, W), or --input-size HxW)"
            )

    def _metadata_normalization(self) -> Normalization:
        meta = self.metadata
        try:
            return Normalization(
                meta.get("mean", 127.5), meta.get("std", 128.0), bool(meta.get("bgr", False))
            )
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{self.path}: bad normalisation in its metadata: {exc}") from None

    def _probe(self) -> int:
        h, w = self.input_size
        n = self._fixed_batch or 1
        try:
            out = self.session.run([self.output_name], {self.input_name: _zeros(n, h, w)})[0]
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(
                f"{self.path}: the network does not run on {h}x{w} inputs ({reason})"
            ) from None
        out = np.asarray(out)
        if out.ndim == 4 and out.shape[2:] == (1, 1):
            out = out.reshape(out.shape[0], -1)
        if out.ndim != 2 or out.shape[0] != n or not np.issubdtype(out.dtype, np.floating):
            raise ModelFileError(
                f"{self.path}: not a face embedder: a batch of {n} gives an output of shape "
                f"{out.shape} ({out.dtype}), expected {n} x D floats"
            )
        declared = self.metadata.get("embedding_size")
        if isinstance(declared, int) and declared != out.shape[1]:
            raise ModelFileError(
                f"{self.path}: metadata says {declared}-d embeddings, the network gives "
                f"{out.shape[1]}"
            )
        return int(out.shape[1])

    def embed(self, crops: Any) -> np.ndarray:
        """Raw embeddings (``N x D`` float32) of aligned ``H x W x 3`` uint8 RGB ``crops``.

        Raises :class:`~mobileface.errors.ImageError` when a crop is not of the input size.
        """
        batch = as_crop_batch(crops, self.input_size)
        n = len(batch)
        out = np.empty((n, self.embedding_size), dtype=np.float32)
        step = self._fixed_batch or self.batch_size
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            x = self.normalization(chunk)
            if self._fixed_batch and len(chunk) < self._fixed_batch:
                x = np.concatenate([x, _zeros(self._fixed_batch - len(chunk), *x.shape[2:])])
            y = self.session.run([self.output_name], {self.input_name: x})[0]
            out[start : start + len(chunk)] = np.asarray(y).reshape(len(x), -1)[: len(chunk)]
        return out


def open_embedder(
    spec: str | Path,
    *,
    threads: int = 1,
    input_size: tuple[int, int] | None = None,
    mean: Any = None,
    std: Any = None,
    bgr: bool | None = None,
) -> Embedder:
    """Open the embedder ``spec`` names: bundled weights, ``dlib``, an ``.onnx`` file, an
    OpenVINO ``.xml`` file or a checkpoint.

    ``mean``, ``std`` and ``bgr`` override the model's own input normalisation field by field
    (for models from other projects). Checkpoints (``.pt``/``.pth``) need PyTorch.
    Thresholds come from the model card (the bundled one, or ``NAME.json`` beside an ``.onnx``
    file), which ``mobileface eval --calibrate`` rewrites, else from the file's own metadata
    (the thresholds known when it was exported).
    """
    from mobileface import weights

    text = str(spec)
    if text == DLIB_SPEC:
        from .dlib_embedder import DlibEmbedder

        embedder: Any = DlibEmbedder()
        name = text
    elif Path(text).suffix.lower() in CHECKPOINT_SUFFIXES:
        from mobileface.errors import require_torch

        require_torch(f"opening the training checkpoint {text}")
        from mobileface.export.torch_embedder import TorchEmbedder

        embedder = TorchEmbedder(text, threads=threads, input_size=input_size)
        name = Path(text).stem
    elif Path(text).suffix.lower() == OPENVINO_SUFFIX:
        from .openvino_embedder import OpenVINOEmbedder

        if input_size is not None and tuple(input_size) != OpenVINOEmbedder.input_size:
            raise ModelFileError(f"{text}: OpenVINO embedders take 112x112 ArcFace crops")
        embedder = OpenVINOEmbedder(text, threads=threads)
        name = embedder.name
    else:
        path = weights.resolve_weights(text)
        embedder = OnnxEmbedder(path, threads=threads, input_size=input_size)
        name = text if weights.is_bundled(text) else path.stem
        embedder.name = name
    card_thresholds = metadata_thresholds(weights.load_model_card(spec))
    if card_thresholds:  # the card is recalibrated after export, so it wins
        embedder.thresholds = card_thresholds
        embedder.thresholds_source = f"model card of {name}"
    if mean is not None or std is not None or bgr is not None:
        embedder.normalization = embedder.normalization.replace(mean=mean, std=std, bgr=bgr)
    return embedder


def _zeros(n: int, h: int, w: int) -> np.ndarray:
    return np.zeros((n, 3, h, w), dtype=np.float32)


def _shape(shape: Any) -> str:
    return " x ".join(str(d) if isinstance(d, int) else (d or "?") for d in shape) or "()"
