"""The ``mobileface`` command line.

Each verb lives in its own module ``mobileface/cli/<verb>_cmd.py`` that exposes
``register(subparsers)``, which adds its parser and sets ``handler``; modules are discovered by
name, so adding a verb touches no other file. Modules import heavy dependencies (PyTorch, ONNX
Runtime) inside their handlers, so ``mobileface --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import sys
from collections.abc import Sequence
from importlib import import_module

from mobileface import __version__
from mobileface.errors import MobileFaceError


def command_modules() -> list[str]:
    """Names of the ``*_cmd`` modules of this package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobileface",
        description="Face verification and identification with MobileFaceNets and friends.",
    )
    parser.add_argument("--version", action="version", version=f"mobileface {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        import_module(f"mobileface.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except MobileFaceError as exc:
        print(f"mobileface {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
