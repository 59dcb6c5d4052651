"""What a mobileface ONNX file says about itself: metadata keys under the ``mobileface.`` prefix.

The exporter writes them into the model's ``metadata_props``; the runtime reads them through
ONNX Runtime (``session.get_modelmeta().custom_metadata_map``), so neither PyTorch nor the
``onnx`` package is needed to use an exported file. Strings are stored as they are; numbers,
lists, booleans and the thresholds table as JSON.

=============================  ==============================================================
key                            value
=============================  ==============================================================
``mobileface.architecture``    zoo name, e.g. ``mobilefacenet``
``mobileface.input_size``      ``[height, width]`` of the aligned crop
``mobileface.mean``            number or 3 numbers subtracted from the pixels
``mobileface.std``             number or 3 numbers the pixels are divided by
``mobileface.bgr``             ``true`` when the network takes BGR channel order
``mobileface.embedding_size``  output width D
``mobileface.thresholds``      ``{"far_1e-3": t, "far_1e-4": t}``: calibrated cosine thresholds
``mobileface.version``         mobileface version that wrote the file
``mobileface.precision``       ``fp32`` or ``int8``
``mobileface.prelu``           how PReLU was written: ``kept``, ``decomposed`` or ``none``
``mobileface.source``          what was exported (a checkpoint's file name, or ``random init``)
``mobileface.quantization``    int8 only: method, calibration images, layers kept in float
=============================  ==============================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PREFIX = "mobileface."

STRING_KEYS = ("architecture", "version", "precision", "prelu", "source")
JSON_KEYS = (
    "input_size",
    "mean",
    "std",
    "bgr",
    "embedding_size",
    "thresholds",
    "model_kwargs",
    "quantization",
)

DEFAULT_FAR_KEY = "far_1e-3"
"""The operating point ``verify`` decides at unless told otherwise (FAR 1 in 1,000)."""


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """``{"input_size": (112, 112), ...}`` -> ``{"mobileface.input_size": "[112, 112]", ...}``.

    ``None`` values are left out. Keys may be given with or without the prefix.
    """
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        short = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        if isinstance(value, str) and short not in JSON_KEYS:
            out[PREFIX + short] = value
        else:
            out[PREFIX + short] = json.dumps(_jsonable(value), sort_keys=True)
    return out


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """The ``mobileface.*`` entries of ``props``, prefix removed, JSON values parsed.

    A value that does not parse is kept as its string (a foreign or damaged entry must not
    make a model unusable); other keys are ignored.
    """
    out: dict[str, Any] = {}
    for key, raw in props.items():
        if not key.startswith(PREFIX):
            continue
        short = key[len(PREFIX) :]
        if short in STRING_KEYS:
            out[short] = raw
            continue
        try:
            out[short] = json.loads(raw)
        except (TypeError, ValueError):
            out[short] = raw
    return out


def metadata_thresholds(meta: Mapping[str, Any]) -> dict[str, float]:
    """The calibrated thresholds in decoded metadata (or a model card): ``{"far_1e-3": t}``."""
    table = meta.get("thresholds")
    if isinstance(table, str):
        try:
            table = json.loads(table)
        except ValueError:
            return {}
    if not isinstance(table, Mapping):
        return {}
    out = {}
    for key, value in table.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return value.item()
    return value
