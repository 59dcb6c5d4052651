"""mobileface: fast, accurate face verification and identification.

Importing the package is cheap and never imports PyTorch. The model zoo and training tools
(``mobileface.models`` and friends) need the ``train`` extra; the runtime does not.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import MobileFaceError

__version__ = "0.1.0"

# Public names that live in submodules needing PyTorch, loaded on first use.
_LAZY = {
    "create_model": "mobileface.models",
    "list_models": "mobileface.models",
    "model_card": "mobileface.models",
    "model_cards": "mobileface.models",
    "fold_batchnorm": "mobileface.models",
}

__all__ = ["MobileFaceError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mobileface' has no attribute {name!r}")
