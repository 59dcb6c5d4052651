"""The HTTP service (FastAPI on uvicorn): ``mobileface serve``, or ``create_app`` in Python.

Needs the ``serve`` extra (``pip install 'mobileface[serve]'``); never imports PyTorch.
"""

from __future__ import annotations

from .app import create_app, error_status
from .config import API_KEY_ENV, ServiceConfig, is_loopback, load_api_keys

__all__ = [
    "API_KEY_ENV",
    "ServiceConfig",
    "create_app",
    "error_status",
    "is_loopback",
    "load_api_keys",
]
