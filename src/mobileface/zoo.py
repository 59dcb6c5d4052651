"""The model zoo's figures, stored: what ``mobileface models`` lists, without PyTorch.

Parameters, multiply-adds and sizes of an architecture do not change between calls, yet
measuring them means building every model (about 80 s for the whole zoo on a 2-core CPU).
They are measured once by :func:`mobileface.models.model_card` and stored, one entry per
registered architecture, in ``assets/model_zoo.json`` beside this module; reading them needs
neither PyTorch nor a model. ``tests/test_zoo.py`` rebuilds every registered model and checks
that the stored entries equal the measured ones, so they cannot drift from the code. After
changing or adding an architecture, rewrite the file with::

    python -m mobileface.zoo --write
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from mobileface.errors import DataFormatError

ZOO_FILE = Path(__file__).resolve().parent / "assets" / "model_zoo.json"

ABOUT = (
    "Figures of every registered architecture, measured from the code by "
    "mobileface.models.model_card (default arguments). Written by "
    "'python -m mobileface.zoo --write'; tests/test_zoo.py checks them against the code."
)


@lru_cache(maxsize=1)
def _stored() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(ZOO_FILE.read_text(encoding="utf-8"))
        return {entry["name"]: entry for entry in data["models"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{ZOO_FILE}: unreadable model zoo figures: {exc}") from None


def zoo_names(pattern: str = "*") -> list[str]:
    """Names of the architectures in the stored zoo matching shell-style ``pattern``, sorted."""
    return sorted(n for n in _stored() if fnmatch.fnmatch(n, pattern))


def zoo_entries(pattern: str = "*") -> list[dict[str, Any]]:
    """Stored model cards (``ModelCard.to_dict()`` form) of the matching architectures."""
    stored = _stored()
    return [dict(stored[n]) for n in zoo_names(pattern)]


def measured_zoo() -> list[dict[str, Any]]:
    """Build and measure every registered architecture, as it is stored (needs PyTorch)."""
    from mobileface.errors import require_torch

    require_torch("measuring the model zoo")
    from mobileface.models import model_cards

    return [json.loads(json.dumps(card.to_dict())) for card in model_cards()]


def write_zoo(path: Path = ZOO_FILE) -> Path:
    """Measure every registered architecture and write the stored figures to ``path``."""
    document = {"about": ABOUT, "models": measured_zoo()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    _stored.cache_clear()
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m mobileface.zoo --write``: rewrite the stored figures from the code."""
    parser = argparse.ArgumentParser(prog="python -m mobileface.zoo", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite {ZOO_FILE.name}")
    args = parser.parse_args(argv)
    if not args.write:
        parser.print_help()
        return 2
    print(f"wrote {write_zoo()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
