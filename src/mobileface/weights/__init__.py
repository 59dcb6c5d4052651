"""Bundled weights: ONNX files shipped inside the package, each with a JSON model card.

A bundled model ``NAME`` is two files in this folder: ``NAME.onnx`` (exported by
``mobileface export``, metadata embedded) and ``NAME.json``, its model card::

    {
      "name": "mobilefacenet",
      "architecture": "mobilefacenet_relu",
      "precision": "fp32",
      "input_size": [112, 112],
      "embedding_size": 128,
      "thresholds": {"far_1e-3": 0.31, "far_1e-4": 0.42},
      "calibration": {"tar": {"far_1e-3": 0.80, "far_1e-4": 0.65}, "pairs": 103000},
      "licence": "...", "training_data": "...", "results": {...}
    }

``thresholds`` are cosine thresholds calibrated at a false-accept rate of 1e-3 and 1e-4
(:mod:`mobileface.evaluation.calibration` writes them, with the TAR measured at each under
``calibration.tar``); ``verify`` decides at FAR 1e-3 unless told otherwise (``--far``).
``mobileface models --weights`` lists the bundled names with their cards' figures.
Dropping the two files in this folder is all it takes to bundle a model; the
default is :data:`DEFAULT_NAME` once its files are here. ``MOBILEFACE_WEIGHTS_DIR`` points
the registry at another folder (tests, or weights installed beside the package).

This module is torch-free and reads no ONNX file: it only finds files and cards.
"""

from __future__ import annotations

import difflib
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
    raise ModelFileError(unknown_name_message(text, names))


def unknown_name_message(text: str, names: list[str] | None = None) -> str:
    """Why ``text`` is no usable ``--model``, and which names are.

    A zoo architecture name gets its own explanation: an architecture is not trained weights,
    though bundled weights of it may exist under another name (the default ``mobilefacenet``
    weights are architecture ``mobilefacenet_relu``).
    """
    from mobileface.zoo import zoo_names

    names = list_weights() if names is None else names
    if text in zoo_names():
        have = architectures().get(text, [])
        if have:
            what = (
                f"{text!r} is a zoo architecture, not a weights name; its bundled weights are "
                f"{', '.join(have)}"
            )
        else:
            what = (
                f"{text!r} is a zoo architecture without bundled weights (an untrained network "
                "cannot verify faces)"
            )
    else:
        close = difflib.get_close_matches(text, names, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        what = f"{text!r} is neither a model file nor bundled weights{hint}"
    return (
        f"{what}; valid --model names: {', '.join(names)} (bundled weights), an .onnx file or "
        "a training checkpoint .pt; see 'mobileface models --weights'"
    )


def architectures() -> dict[str, list[str]]:
    """``{architecture: [bundled weights names]}`` from the cards' ``architecture`` entries."""
    out: dict[str, list[str]] = {}
    for name in list_weights():
        arch = load_model_card(name).get("architecture")
        if arch:
            out.setdefault(str(arch), []).append(name)
    return out


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


def card_tar(card: dict[str, Any], key: str = "far_1e-3") -> float | None:
    """The TAR the card's calibration measured at its threshold ``key``, if recorded."""
    value = ((card.get("calibration") or {}).get("tar") or {}).get(key)
    return None if value is None else float(value)


def weights_info(name: str) -> dict[str, Any]:
    """What ``mobileface models --weights`` shows of bundled weights ``name``, from its card.

    ``precision`` is the card's own entry (``None`` in cards that predate it; the CLI then
    reads the ONNX file's metadata). ``lfw_view2`` holds accuracy, its standard deviation
    over the 10 folds, AUC, EER and TAR at each FAR; ``thresholds`` the calibrated operating
    points and ``calibration_tar`` the TAR measured at each.
    """
    card = load_model_card(name)
    lfw = (card.get("results") or {}).get("lfw_view2") or {}
    calibration = card.get("calibration") or {}
    keys = ("pairs", "accuracy", "accuracy_std", "auc", "eer", "tar_at_far")
    return {
        "name": name,
        "default": name == default_weights_name(),
        "architecture": card.get("architecture"),
        "precision": card.get("precision"),
        "input_size": card.get("input_size"),
        "embedding_size": card.get("embedding_size"),
        "size_mb": (card.get("file") or {}).get("size_mb"),
        "lfw_view2": {k: lfw[k] for k in keys if k in lfw} or None,
        "thresholds": dict(card.get("thresholds") or {}),
        "calibration_tar": dict(calibration.get("tar") or {}),
        "calibration_pairs": calibration.get("pairs"),
        "licence": card.get("licence"),
    }
