"""Exceptions that carry a message meant for the user (the CLI prints them without a trace).

Every error names the input it is about and what is wrong with it. Each class has a stable
machine-readable ``code`` (``mobileface VERB --json`` prints it as ``{"error": code,
"message": ...}``) and the CLI's ``exit_status`` for it:

======================  =====================  ======
class                   code                   status
======================  =====================  ======
MobileFaceError         ``error``              1
MissingDependencyError  ``missing_dependency`` 1
ImageError              ``bad_image``          1
NoFaceError             ``no_face``            1
DataFormatError         ``data_format``        1
ModelFileError          ``model_file``         1
OperatingPointError     ``uncalibrated_far``   1
UsageError              ``usage``              2
======================  =====================  ======

A subclass defined elsewhere without its own ``code`` gets one from its name
(``ModelMismatchError`` -> ``model_mismatch``): see :func:`error_code`.
"""

from __future__ import annotations

import re


class MobileFaceError(Exception):
    """Base class of the errors this package raises on bad input or a missing dependency."""

    code = "error"
    exit_status = 1


class MissingDependencyError(MobileFaceError, ImportError):
    """An optional dependency (PyTorch, for instance) is needed and not installed."""

    code = "missing_dependency"


class ImageError(MobileFaceError, ValueError):
    """An image could not be decoded or is unusable (corrupt, truncated, too large...)."""

    code = "bad_image"


class NoFaceError(MobileFaceError):
    """No face was found where one was required."""

    code = "no_face"


class DataFormatError(MobileFaceError, ValueError):
    """A dataset, pair list, record file or config is malformed."""

    code = "data_format"


class ModelFileError(MobileFaceError):
    """A model file is missing, unreadable, corrupt or of the wrong kind."""

    code = "model_file"


class OperatingPointError(MobileFaceError, ValueError):
    """A false-accept rate was asked for that the model has no calibrated threshold at."""

    code = "uncalibrated_far"


class UsageError(MobileFaceError, ValueError):
    """The command line itself is wrong: a bad or conflicting option (exit status 2)."""

    code = "usage"
    exit_status = 2


def error_code(exc: BaseException) -> str:
    """The stable machine-readable code of ``exc`` (see the module docstring).

    A :class:`MobileFaceError` subclass without a ``code`` of its own is named after its class
    (``UnknownPersonError`` -> ``unknown_person``), so codes never silently collapse to the
    generic ``error``.
    """
    cls = type(exc)
    if not isinstance(exc, MobileFaceError):
        return "error"
    if "code" in cls.__dict__ or cls is MobileFaceError:
        return str(cls.code)
    stem = cls.__name__.removesuffix("Error") or cls.__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def require_torch(feature: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``feature`` if PyTorch is not importable."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs PyTorch; install it with: pip install 'mobileface[train]'"
        ) from exc
