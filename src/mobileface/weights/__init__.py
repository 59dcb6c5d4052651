"""Bundled weights: ONNX files shipped inside the package, each with a JSON model card.

A bundled model ``NAME`` is two files in this folder: ``NAME.onnx`` (exported by
``mobileface export``, metadata embedded) and ``NAME.json``, its model card::

    {
      "name": "mobilefacenet",
      "architecture": "mobilefacenet",
      "input_size": [112, 112],
      "embedding_size": 128,
      "thresholds": {"far_1e-3": 0.31, "far_1e-4": 0.42},
      "licence": "...", "training_data": "...", "results": {...}
    }

``thresholds`` are cosine thresholds calibrated at a false-accept rate of 1e-3 and 1e-4
(:mod:`mobileface.evaluation.calibration` writes them); ``verify`` decides at FAR 1e-3 unless
told otherwise. Dropping the two files in this folder is all it takes to bundle a model; the
default is :data:`DEFAULT_NAME` once its files are here. ``MOBILEFACE_WEIGHTS_DIR`` points
the registry at another folder (tests, or weights installed beside the package).

This module is torch-free and reads no ONNX file: it only finds files and cards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobileface.errors import DataFormatError, ModelFileError

WEIGHTS_ENV = "MOBILEFACE_WEIGHTS_DIR"

DEFAULT_NAME = "mobilefacenet"
"""Name the project's default trained weights are bundled under (any MobileFaceNet variant;
the card's ``architecture`` says which)."""

NO_WEIGHTS_HINT = (
    "this installation bundles no trained weights yet: pass --model PATH.onnx (an exported "
    "model, e.g. from 'mobileface export') or a training checkpoint .pt"
)


def weights_dir() -> Path:
    """The folder bundled weights are read from (``$MOBILEFACE_WEIGHTS_DIR`` or this package)."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent


def list_weights() -> list[str]:
    """Names of the bundled models (an ``.onnx`` file with its ``.json`` card), sorted."""
    folder = weights_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.stem for p in folder.glob("*.onnx") if p.is_file() and p.with_suffix(".json").is_file()
    )


def is_bundled(name: str) -> bool:
    """Whether ``name`` is a bundled model's name."""
    return name in list_weights()


def default_weights_name() -> str | None:
    """The default model's name, or ``None`` while this installation bundles none."""
    names = list_weights()
    if DEFAULT_NAME in names:
        return DEFAULT_NAME
    return None


def resolve_weights(name_or_path: str | Path) -> Path:
    """The ONNX file for a bundled weights name, or the path itself if it is a model file.

    Raises :class:`ModelFileError` for a missing file or an unknown name (listing the bundled
    names, or saying that none are bundled and to pass ``--model PATH.onnx``).
    """
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    if is_bundled(text):
        return weights_dir() / f"{text}.onnx"
    if path.suffix or os.sep in text or "/" in text:
        raise ModelFileError(f"{text}: no such model file")
    names = list_weights()
    if not names:
        raise ModelFileError(
            f"{text!r} is not a model file or bundled weights name; {NO_WEIGHTS_HINT}"
        )
    raise ModelFileError(
        f"{text!r} is neither a model file nor bundled weights (bundled: {', '.join(names)})"
    )


def load_model_card(name_or_path: str | Path) -> dict[str, Any]:
    """The model card of bundled weights, or ``FILE.json`` beside a model file; ``{}`` if none.

    Raises :class:`DataFormatError` for a card that is not a JSON object.
    """
    text = str(name_or_path)
    if is_bundled(text):
        card_path = weights_dir() / f"{text}.json"
    else:
        card_path = Path(text).with_suffix(".json")
        if card_path == Path(text) or not card_path.is_file():
            return {}
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{card_path}: unreadable model card: {exc}") from None
    if not isinstance(card, dict):
        raise DataFormatError(f"{card_path}: a model card must be a JSON object")
    return card


def card_threshold(card: dict[str, Any], key: str = "far_1e-3") -> float | None:
    """The card's calibrated threshold under ``key`` (``far_1e-3``, ``far_1e-4``), if any."""
    value = (card.get("thresholds") or {}).get(key)
    return None if value is None else float(value)
