"""The ``mobileface`` command line.

Each verb lives in its own module ``mobileface/cli/<verb>_cmd.py`` that exposes
``register(subparsers)``, which adds its parser and sets ``handler``; modules are discovered by
name, so adding a verb touches no other file. Modules import heavy dependencies (PyTorch, ONNX
Runtime) inside their handlers, so ``mobileface --help`` stays fast and torch-free.

Errors are handled here, once for every verb. Without ``--json`` they are one line on stderr,
``mobileface VERB: error: MESSAGE``. With ``--json`` (anywhere on the command line) they are
one line of JSON on **stdout**, where the results go too, so ``jq`` always reads one
document::

    {"error": "no_face", "message": "b.jpg: no face found ...", "command": "verify"}

``error`` is a stable code (:func:`mobileface.errors.error_code`: ``no_face``, ``bad_image``,
``model_file``, ``data_format``, ``missing_dependency``, ``uncalibrated_far``, ``usage``,
``io_error``, ``internal_error``...). The exit status is non-zero either way: 1 for errors,
2 for usage errors, 130 when interrupted. Verbs print results with
:func:`mobileface.cli._format.print_json` (one compact line).
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module

from mobileface import __version__
from mobileface.errors import MobileFaceError, error_code

JSON_ERRORS_NOTE = (
    "With --json, every verb prints one line of JSON on stdout, errors included: "
    '{"error": CODE, "message": TEXT, "command": VERB}, with a non-zero exit status '
    "(1; 2 for usage errors)."
)


class _ArgumentError(Exception):
    """A usage error found by argparse, kept so :func:`main` can print it as text or JSON."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors reach :func:`main` instead of exiting.

    Sub-parsers inherit the class, so every verb's usage errors go the same way.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(self, message)


def command_modules() -> list[str]:
    """Names of the ``*_cmd`` modules of this package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd"))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every verb's sub-parser registered."""
    parser = _Parser(
        prog="mobileface",
        description="Face verification and identification with MobileFaceNets and friends.",
        epilog=JSON_ERRORS_NOTE,
    )
    parser.add_argument("--version", action="version", version=f"mobileface {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        import_module(f"mobileface.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        if "--json" in argv:
            _report(_command_of(argv), "usage", exc.message, as_json=True)
        else:
            exc.parser.print_usage(sys.stderr)
            print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        return 2
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.handler(args) or 0)
    except MobileFaceError as exc:
        _report(args.command, error_code(exc), str(exc), as_json)
        return int(getattr(exc, "exit_status", 1))
    except KeyboardInterrupt:
        _report(args.command, "interrupted", "interrupted", as_json)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not as_json:
            raise
        # Keep the promise of one JSON document on stdout; the trace still goes to stderr.
        traceback.print_exc(file=sys.stderr)
        code = "io_error" if isinstance(exc, OSError) else "internal_error"
        _report(args.command, code, f"{type(exc).__name__}: {exc}", as_json=True)
        return 1


def _report(command: str | None, code: str, message: str, as_json: bool) -> None:
    """Print an error: one JSON line on stdout with ``--json``, else one text line on stderr."""
    if as_json:
        from mobileface.cli._format import print_json

        print_json({"error": code, "message": message, "command": command})
    elif code == "interrupted":
        print("interrupted", file=sys.stderr)
    else:
        print(f"mobileface {command}: error: {message}", file=sys.stderr)


def _command_of(argv: Sequence[str]) -> str | None:
    """The verb on a command line that did not parse (the first word not starting with -)."""
    return next((a for a in argv if not a.startswith("-")), None)
