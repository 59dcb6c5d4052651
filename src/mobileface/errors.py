"""Exceptions that carry a message meant for the user (the CLI prints them without a trace)."""

from __future__ import annotations


class MobileFaceError(Exception):
    """Base class of the errors this package raises on bad input or a missing dependency."""


class MissingDependencyError(MobileFaceError, ImportError):
    """An optional dependency (PyTorch, for instance) is needed and not installed."""


def require_torch(feature: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``feature`` if PyTorch is not importable."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs PyTorch; install it with: pip install 'mobileface[train]'"
        ) from exc
