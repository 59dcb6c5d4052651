"""``mobileface identify``: who is in this photo? (1:N search of a gallery)"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    from mobileface.gallery.pipeline import add_encoder_arguments
    from mobileface.gallery.store import DB_HELP

    parser = subparsers.add_parser(
        "identify",
        help="find the enrolled persons most like the face in a photo",
        description=(
            "Detect the largest face in each photo and rank the gallery's persons by "
            "similarity, best first. Only faces embedded by the same model are compared. "
            "Large SQLite galleries are searched with an approximate HNSW index saved next to "
            "the file, PostgreSQL ones in the database (pgvector); --index exact forces an "
            "exhaustive search."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMG", help="photos to identify")
    parser.add_argument("--db", required=True, help=f"the gallery: {DB_HELP}")
    parser.add_argument("--top-k", type=int, default=5, help="persons to list (default 5)")
    parser.add_argument(
        "--aggregate",
        choices=("max", "mean"),
        default="max",
        help="a person's score: their best face (max, default) or the mean over their faces",
    )
    parser.add_argument(
        "--index",
        choices=("auto", "exact", "approx"),
        default="auto",
        help="search method (auto: approximate from 200,000 faces on; on PostgreSQL, the "
        "planner's choice)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on one line (a list when several photos are given; "
        'a photo that failed is {"image", "error", "message"})',
    )
    add_encoder_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.cli._format import print_json
    from mobileface.errors import DataFormatError, ImageError, NoFaceError
    from mobileface.gallery import Gallery, open_store
    from mobileface.gallery.gallery import face_dict
    from mobileface.gallery.pipeline import encoder_from_args

    if args.top_k < 1:
        raise DataFormatError("--top-k must be at least 1")
    store = open_store(args.db, create=False)
    status = 0
    records: list[dict] = []
    several = len(args.images) > 1
    with Gallery(store, encoder_from_args(args), index=args.index) as gallery:
        source = str(getattr(gallery.encoder, "threshold_source", "") or "")
        for number, image in enumerate(args.images, 1):
            try:
                result = gallery.identify(image, args.top_k, args.aggregate)
            except (ImageError, NoFaceError) as exc:
                if not several:
                    raise  # reported once, as text or JSON, by the CLI's error handling
                status = 1
                if args.json:
                    code = getattr(exc, "code", "error")
                    records.append({"image": image, "error": code, "message": str(exc)})
                else:
                    print(f"mobileface identify: error: {exc}", file=sys.stderr)
                continue
            if args.json:
                records.append(
                    {
                        "image": image,
                        "face": face_dict(result.face),
                        "threshold": result.threshold,
                        "model": str(result.model),
                        "matches": [m.to_dict() for m in result.matches],
                    }
                )
                continue
            if several:
                print(f"{image}:")
            print(describe(result, source))
            if several and number < len(args.images):
                print()
    if args.json:
        print_json(records if several else records[0])
    return status


def describe(result: Any, threshold_source: str = "") -> str:
    """The ranked candidates as a table, then the verdict at the threshold used."""
    from mobileface.cli._format import format_table

    if not result.matches:
        return f"no one enrolled with {result.model}"
    threshold = result.threshold
    headers = ["#", "name", "person", "score"]
    if threshold is not None:
        headers.append("decision")
    rows = []
    for rank, m in enumerate(result.matches, 1):
        row: list[object] = [rank, m.name, m.person_id, f"{m.score:.4f}"]
        if threshold is not None:
            row.append("match" if m.same else "-")
        rows.append(row)
    lines = [format_table(headers, rows)]
    if threshold is not None:
        note = " (generic fallback threshold)" if threshold_source.startswith("fallback") else ""
        best = result.matches[0]
        if best.same:
            lines.append(
                f"match: {best.name} (person {best.person_id}), score {best.score:.4f} >= "
                f"{threshold:.4f}{note}"
            )
        else:
            lines.append(f"no match above {threshold:.4f}{note}")
    return "\n".join(lines)
