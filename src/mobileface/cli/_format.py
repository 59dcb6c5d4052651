"""Terminal output: plain-text tables, and the one-line JSON every ``--json`` prints."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import IO, Any


def json_line(document: Any) -> str:
    """``document`` as one compact line of JSON (what ``--json`` prints, one per run).

    Non-finite floats become ``null`` (``NaN`` is not JSON: ``jq`` and browsers reject it),
    tuples become lists, paths and other objects their ``str``.
    """
    return json.dumps(
        _jsonable(document), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def print_json(document: Any, file: IO[str] | None = None) -> None:
    """Print ``document`` as one line of JSON on ``file`` (default stdout), flushed."""
    out = file or sys.stdout
    print(json_line(document), file=out, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy arrays and scalars
        return _jsonable(value.tolist())
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Align ``rows`` under ``headers``; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
