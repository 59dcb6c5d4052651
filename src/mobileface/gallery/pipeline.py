"""The face encoder a gallery is searched with: detector + alignment + ONNX embedding model.

:func:`open_encoder` builds it from a model spec (bundled weights name or ``.onnx`` path).
It is safe to call from several threads: it keeps ``workers`` verifiers, each with its own
detector (detectors are not thread-safe), sharing one ONNX Runtime session.

The encoder's :class:`~.store.ModelKey` is the model's name and the first 16 hex digits of
the SHA-256 of its weights file, so two files with the same weights share embeddings and a
retrained model never mixes with the old one.

Also here: the command-line options every gallery verb shares (:func:`add_encoder_arguments`).
Only the standard library is imported at module level, so ``mobileface --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import queue
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MODEL_ENV = "MOBILEFACE_MODEL"
"""Environment variable naming the default model (weights name or ``.onnx`` path)."""


class Encoder:
    """Image -> (L2-normalised embedding, face); thread-safe up to ``workers`` at a time."""

    def __init__(self, verifiers: list[Any], model: Any, embedder: Any) -> None:
        if not verifiers:
            raise ValueError("an encoder needs at least one verifier")
        self.model = model
        self.embedder = embedder
        self.embedding_size = int(getattr(embedder, "embedding_size", 0) or 0)
        self.threshold: float | None = getattr(verifiers[0], "threshold", None)
        self.threshold_source: str = getattr(verifiers[0], "threshold_source", "")
        self.workers = len(verifiers)
        self._pool: queue.Queue = queue.Queue()
        for verifier in verifiers:
            self._pool.put(verifier)

    @contextmanager
    def verifier(self) -> Iterator[Any]:
        """Borrow one verifier (waits while all are busy)."""
        item = self._pool.get()
        try:
            yield item
        finally:
            self._pool.put(item)

    def encode(self, image_rgb: Any, label: str = "image") -> tuple[Any, Any]:
        """The face the policy picks in ``image_rgb`` and its L2-normalised embedding.

        Raises :class:`~mobileface.errors.NoFaceError` naming ``label``.
        """
        vector, face, _ = self.encode_with_crop(image_rgb, label)
        return vector, face

    def encode_with_crop(self, image_rgb: Any, label: str = "image") -> tuple[Any, Any, Any]:
        """As :meth:`encode`, plus the aligned crop the model saw (uint8 RGB), for display."""
        import numpy as np

        with self.verifier() as verifier:
            face = verifier.find_face(image_rgb, label)
            crop = verifier.align(image_rgb, face)
        vector = np.asarray(self.embedder.embed([crop]), np.float32).reshape(-1)
        return vector / max(float(np.linalg.norm(vector)), 1e-12), face, crop


def model_key_for(spec: str | Path, embedder: Any) -> Any:
    """The :class:`~.store.ModelKey` (name, weights digest) of an opened embedder."""
    from mobileface.errors import ModelFileError
    from mobileface.paths import sha256_of

    from .store import ModelKey

    digest = getattr(embedder, "sha256", None)
    path = next(
        (
            Path(c)
            for c in (getattr(embedder, "path", None), getattr(embedder, "model_path", None), spec)
            if c is not None and Path(c).is_file()
        ),
        None,
    )
    if not digest and path is not None:
        digest = sha256_of(path)
    if not digest:
        raise ModelFileError(f"{spec}: cannot tell which weights this is (no file to hash)")
    name = str(getattr(embedder, "name", None) or (path.stem if path else spec))
    return ModelKey(name, str(digest)[:16])


def open_encoder(
    model: str | Path | None,
    *,
    detector: str = "yunet",
    detector_path: str | Path | None = None,
    threshold: float | None = None,
    workers: int = 1,
    threads: int = 1,
    policy: str = "largest",
    fallback_threshold: bool = True,
) -> Encoder:
    """An :class:`Encoder` for ``model`` (``None``: ``$MOBILEFACE_MODEL``, else the bundled
    default weights if the installed package has any).

    The decision threshold is ``threshold``, else the model's calibrated one, else (with
    ``fallback_threshold``) the runtime's generic fallback, as ``mobileface verify`` does;
    :attr:`Encoder.threshold_source` says which.
    """
    from mobileface.align import create_detector
    from mobileface.runtime import FALLBACK_THRESHOLD, open_embedder
    from mobileface.runtime.verifier import FaceVerifier

    spec = resolve_model_spec(model)
    embedder = open_embedder(spec, threads=threads)
    key = model_key_for(spec, embedder)
    detector_kwargs = {"model_path": detector_path} if detector_path else {}
    verifiers = [
        FaceVerifier(
            embedder,
            detector=create_detector(detector, **detector_kwargs),
            threshold=threshold,
            policy=policy,
            fallback_threshold=FALLBACK_THRESHOLD if fallback_threshold else None,
        )
        for _ in range(max(1, int(workers)))
    ]
    return Encoder(verifiers, key, embedder)


def resolve_model_spec(model: str | Path | None) -> str | Path:
    """``model``, else ``$MOBILEFACE_MODEL``, else the default bundled weights."""
    from mobileface.errors import ModelFileError

    if model:
        return model
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    default = _default_weights()
    if default is None:
        from mobileface.weights import NO_WEIGHTS_HINT

        raise ModelFileError(f"no face model given (nor ${MODEL_ENV}); {NO_WEIGHTS_HINT}")
    return default


def _default_weights() -> str | None:
    from mobileface.weights import default_weights_name

    return default_weights_name()


# -- command-line plumbing shared by enroll, identify, persons reembed, serve ---------------


def add_encoder_arguments(parser: argparse.ArgumentParser, threads: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help=f"bundled weights name or .onnx file (default ${MODEL_ENV}, else the bundled default)",
    )
    group.add_argument("--detector", default="yunet", help="face detector (default yunet)")
    group.add_argument("--detector-model", help="the detector's model file")
    group.add_argument(
        "--threshold",
        type=float,
        help="decision threshold on the cosine score (default: the model card's)",
    )
    if threads:
        group.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")


def encoder_from_args(args: argparse.Namespace, workers: int = 1) -> Encoder:
    return open_encoder(
        args.model,
        detector=args.detector,
        detector_path=args.detector_model,
        threshold=args.threshold,
        workers=workers,
        threads=getattr(args, "threads", 1),
    )


def expand_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the images directly in them, sorted by name."""
    from mobileface.errors import ImageError
    from mobileface.image import IMAGE_EXTENSIONS

    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                raise ImageError(f"{path}: no image files in this folder")
            out += found
        else:
            out.append(path)
    return out
