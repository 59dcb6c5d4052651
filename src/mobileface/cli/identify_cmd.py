"""``mobileface identify``: who is in this photo? (1:N search of a gallery)"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from mobileface.gallery.pipeline import add_encoder_arguments

    parser = subparsers.add_parser(
        "identify",
        help="find the enrolled persons most like the face in a photo",
        description=(
            "Detect the largest face in each photo and rank the gallery's persons by "
            "similarity, best first. Only faces embedded by the same model are compared. "
            "Large galleries are searched with an approximate HNSW index saved next to the "
            "database (--index exact forces an exhaustive search)."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMG", help="photos to identify")
    parser.add_argument("--db", required=True, help="gallery file (SQLite)")
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
        help="search method (auto: approximate from 200,000 faces on)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per photo")
    add_encoder_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.cli._format import format_table
    from mobileface.errors import DataFormatError, ImageError, NoFaceError
    from mobileface.gallery import Gallery, GalleryStore
    from mobileface.gallery.gallery import face_dict
    from mobileface.gallery.pipeline import encoder_from_args

    if args.top_k < 1:
        raise DataFormatError("--top-k must be at least 1")
    store = GalleryStore(args.db, create=False)
    status = 0
    with Gallery(store, encoder_from_args(args), index=args.index) as gallery:
        for image in args.images:
            try:
                result = gallery.identify(image, args.top_k, args.aggregate)
            except (ImageError, NoFaceError) as exc:
                print(f"mobileface identify: error: {exc}", file=sys.stderr)
                status = 1
                continue
            if args.json:
                record = {
                    "image": image,
                    "face": face_dict(result.face),
                    "threshold": result.threshold,
                    "model": str(result.model),
                    "matches": [m.to_dict() for m in result.matches],
                }
                print(json.dumps(record))
                continue
            if len(args.images) > 1:
                print(f"{image}:")
            if not result.matches:
                print("  no one enrolled with this model" if len(args.images) > 1 else "no match")
                continue
            rows = [
                [
                    rank,
                    m.name,
                    m.person_id,
                    f"{m.score:.4f}",
                    "" if m.same is None else ("match" if m.same else ""),
                ]
                for rank, m in enumerate(result.matches, 1)
            ]
            print(format_table(["#", "name", "person", "score", ""], rows))
            if result.threshold is not None:
                source = getattr(gallery.encoder, "threshold_source", "")
                note = f"; {source}" if source.startswith("fallback") else ""
                print(f"(match: score >= {result.threshold:.4f}{note})")
    return status
