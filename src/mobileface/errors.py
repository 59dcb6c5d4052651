"""Exceptions that carry a message meant for the user (the CLI prints them without a trace).

Every error names the input it is about and what is wrong with it.
"""

from __future__ import annotations


class MobileFaceError(Exception):
    """Base class of the errors this package raises on bad input or a missing dependency."""


class MissingDependencyError(MobileFaceError, ImportError):
    """An optional dependency (PyTorch, for instance) is needed and not installed."""


class ImageError(MobileFaceError, ValueError):
    """An image could not be decoded or is unusable (corrupt, truncated, too large...)."""


class NoFaceError(MobileFaceError):
    """No face was found where one was required."""


class DataFormatError(MobileFaceError, ValueError):
    """A dataset, pair list, record file or config is malformed."""


class ModelFileError(MobileFaceError):
    """A model file is missing, unreadable, corrupt or of the wrong kind."""


def require_torch(feature: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``feature`` if PyTorch is not importable."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs PyTorch; install it with: pip install 'mobileface[train]'"
        ) from exc
