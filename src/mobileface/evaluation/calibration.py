"""Threshold calibration: the cosine threshold that gives each target FAR on a dataset.

:func:`calibrate` measures, for each target FAR, the lowest threshold whose empirical FAR on the
given pairs does not exceed the target (and the TAR there); targets the dataset's different
pairs cannot support are left out and said so (see :mod:`mobileface.evaluation.metrics`).
:func:`write_thresholds` stores them in a model card JSON under ``"thresholds"`` with keys like
``"far_1e-3"``, which ``mobileface verify`` and ``identify`` read, and records how they were
obtained under ``"calibration"`` (dataset, pair counts, preprocessing, date). The card is
rewritten atomically; its other entries are kept.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobileface.errors import DataFormatError

from .metrics import DEFAULT_FARS, tar_at_far


def threshold_key(far: float) -> str:
    """The model-card key of a target FAR: 0.001 is ``far_1e-3``, 0.0005 ``far_5e-4``."""
    far = float(far)
    if not 0.0 < far < 1.0:
        raise DataFormatError(f"target FAR {far} is not between 0 and 1")
    exponent = math.floor(math.log10(far))
    mantissa = far / 10**exponent
    if abs(mantissa - round(mantissa)) < 1e-9:
        mantissa = round(mantissa)
    if mantissa >= 10:  # rounding at a power of ten
        mantissa, exponent = 1, exponent + 1
    return f"far_{mantissa:g}e{exponent}"


def parse_threshold_key(key: str) -> float:
    """The FAR of a key written by :func:`threshold_key` (``far_1e-3`` -> 0.001)."""
    if not key.startswith("far_"):
        raise DataFormatError(f"{key!r} is not a threshold key (far_<rate>)")
    try:
        return float(key[4:])
    except ValueError as exc:
        raise DataFormatError(f"{key!r} is not a threshold key (far_<rate>)") from exc


@dataclass(frozen=True)
class Calibration:
    """Thresholds by card key, the TAR each gives on the calibration set, and what was left out."""

    thresholds: dict[str, float]
    tar: dict[str, float]
    unsupported: dict[str, str]
    pairs: int
    different_pairs: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "tar": self.tar,
            "unsupported": self.unsupported,
            "pairs": self.pairs,
            "different_pairs": self.different_pairs,
            **self.details,
        }


def calibrate(scores, same, fars: Iterable[float] = DEFAULT_FARS, **details: Any) -> Calibration:
    """Thresholds at ``fars`` on these scored pairs; ``details`` (dataset, flip...) are kept."""
    results = tar_at_far(scores, same, fars)
    same_list = [bool(v) for v in same]
    thresholds, tar, unsupported = {}, {}, {}
    for r in results:
        key = threshold_key(r.far)
        if r.tar is None or r.threshold is None:
            unsupported[key] = r.reason or "not supported"
            continue
        thresholds[key] = r.threshold
        tar[key] = r.tar
    return Calibration(
        thresholds=thresholds,
        tar=tar,
        unsupported=unsupported,
        pairs=len(same_list),
        different_pairs=same_list.count(False),
        details=dict(details),
    )


def read_card(path: str | Path) -> dict[str, Any]:
    """A model card JSON as a dictionary ({} where the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: not a readable model card JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise DataFormatError(f"{path}: a model card must be a JSON object")
    return card


def card_thresholds(card: Mapping[str, Any]) -> dict[float, float]:
    """The calibrated thresholds of a card, by FAR ({} where it has none)."""
    out = {}
    for key, value in dict(card.get("thresholds") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[parse_threshold_key(key)] = float(value)
    return out


def write_thresholds(
    card_path: str | Path, calibration: Calibration, *, replace: bool = True
) -> Path:
    """Store ``calibration`` in the card at ``card_path`` (created if missing), atomically.

    With ``replace`` the card's thresholds become exactly the calibrated ones; otherwise they
    are merged over the existing ones.
    """
    path = Path(card_path)
    card = read_card(path)
    thresholds = {} if replace else dict(card.get("thresholds") or {})
    thresholds.update(calibration.thresholds)
    card["thresholds"] = dict(
        sorted(thresholds.items(), key=lambda kv: -parse_threshold_key(kv[0]))
    )
    card["calibration"] = {
        **calibration.to_dict(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    card["calibration"].pop("thresholds", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
