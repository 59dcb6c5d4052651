"""Opening the models to evaluate: ours or anyone's, with the preprocessing each needs.

A model spec is a bundled weights name (the default weights when omitted), a training
checkpoint (``.pt``), or any ONNX embedder; ``input_size``, ``mean``, ``std`` and ``bgr``
override the input preprocessing so that models from other projects can be measured on the
same crops as ours. See :func:`mobileface.runtime.open_embedder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobileface.errors import DataFormatError, ModelFileError

from .pipeline import model_cache_key


@dataclass
class OpenedModel:
    spec: str
    label: str  # how reports name it
    embedder: Any
    file: Path | None  # the model file (for its hash and its card), where there is one
    cache_key: dict[str, Any]


def default_model_spec() -> str:
    """The default weights' name; a clear error while none are bundled."""
    from mobileface import weights

    name = weights.default_weights_name()
    if not name:
        raise ModelFileError(f"no --model given and {weights.NO_WEIGHTS_HINT}")
    return name


def open_model(
    spec: str | None,
    *,
    threads: int = 1,
    input_size: tuple[int, int] | None = None,
    mean: Any = None,
    std: Any = None,
    bgr: bool | None = None,
) -> OpenedModel:
    """Open ``spec`` (the default weights when None) with these preprocessing overrides."""
    from mobileface.runtime import open_embedder

    spec = str(spec) if spec else default_model_spec()
    try:
        embedder = open_embedder(
            spec, threads=threads, input_size=input_size, mean=mean, std=std, bgr=bgr
        )
    except ValueError as exc:  # a bad normalisation (std 0, wrong channel count)
        raise DataFormatError(f"{spec}: {exc}") from None
    file = model_file(spec)
    label = str(getattr(embedder, "name", "") or Path(spec).stem)
    return OpenedModel(spec, label, embedder, file, model_cache_key(embedder, file, spec))


def model_file(spec: str) -> Path | None:
    """The file behind a spec: the path itself, or the bundled weights' ONNX file."""
    path = Path(spec)
    if path.is_file():
        return path
    from mobileface import weights

    try:
        resolved = weights.resolve_weights(spec)
    except ModelFileError:
        return None
    return resolved if resolved.is_file() else None


def card_path_for(model: OpenedModel) -> Path:
    """Where a model's card lives (:mod:`mobileface.weights`): the bundled ``NAME.json``, or
    ``FILE.json`` beside an ONNX or checkpoint file."""
    from mobileface import weights

    if weights.is_bundled(model.spec):
        return weights.weights_dir() / f"{model.spec}.json"
    if model.file is None:
        raise ModelFileError(f"{model.spec}: no model file to put a card beside; name one")
    return model.file.with_suffix(".json")
