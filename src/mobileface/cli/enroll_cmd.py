"""``mobileface enroll``: add a person's photos to a gallery."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from mobileface.gallery.pipeline import add_encoder_arguments
    from mobileface.gallery.store import DB_HELP

    parser = subparsers.add_parser(
        "enroll",
        help="enrol a person's photos into a gallery",
        description=(
            "Detect the largest face in each photo, embed it and store it under NAME in the "
            "gallery (a SQLite file, created if missing, or a PostgreSQL database given as "
            "postgresql://user[:password]@host:port/db). If exactly one person is already "
            "called NAME the photos are added to them; --new always creates a new person. "
            "All photos are checked first and written in one transaction: one without a face "
            "fails the whole enrolment (or is skipped with --skip-bad). Photos themselves are "
            "not stored unless --keep-photos is given; their SHA-256 is."
        ),
    )
    parser.add_argument("name", help="the person's name")
    parser.add_argument("images", nargs="+", metavar="IMG", help="photos, or folders of photos")
    parser.add_argument("--db", required=True, help=f"the gallery: {DB_HELP}")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--new", action="store_true", help="always create a new person")
    target.add_argument("--person-id", type=int, help="add the photos to this person")
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata to store with the person (repeatable)",
    )
    parser.add_argument("--keep-photos", action="store_true", help="store the photos too")
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip photos without a face instead of failing"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the person as one JSON document on one line"
    )
    add_encoder_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.cli._format import print_json
    from mobileface.errors import DataFormatError, ImageError, NoFaceError
    from mobileface.gallery import Gallery
    from mobileface.gallery.pipeline import encoder_from_args, expand_images

    metadata = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataFormatError(f"--meta {item!r}: write KEY=VALUE")
        metadata[key] = value
    images = expand_images(args.images)
    with Gallery.open(args.db, encoder_from_args(args)) as gallery:
        person_id = args.person_id
        if person_id is None and not args.new:
            same_name = gallery.persons(name=args.name)
            if len(same_name) > 1:
                ids = ", ".join(str(p.id) for p in same_name)
                raise DataFormatError(
                    f"{len(same_name)} persons are called {args.name!r} (ids {ids}): "
                    "pass --person-id ID, or --new"
                )
            if same_name:
                person_id = same_name[0].id
        try:
            result = gallery.enroll(
                args.name,
                images,
                person_id=person_id,
                metadata=metadata or None,
                keep_photos=args.keep_photos,
                skip_bad=args.skip_bad,
            )
        except (ImageError, NoFaceError) as exc:
            if args.skip_bad or len(images) < 2:
                raise
            raise type(exc)(
                f"{exc}; nothing was enrolled (pass --skip-bad to enrol the other photos "
                "without it)"
            ) from None
    for label, reason in result.failed:
        print(f"skipped {label}: {reason}", file=sys.stderr)
    for label in result.duplicates:
        print(f"skipped {label}: already enrolled for this person", file=sys.stderr)
    person = result.person
    if args.json:
        skipped = [{"image": label, "reason": reason} for label, reason in result.failed]
        skipped += [
            {"image": label, "reason": "already enrolled for this person"}
            for label in result.duplicates
        ]
        print_json({**person.to_dict(), "added": result.added, "skipped": skipped})
    else:
        verb = "added to" if args.person_id or person_id else "enrolled"
        print(
            f"{verb} person {person.id} {person.name!r}: {len(result.added)} new face(s), "
            f"{len(person.faces)} in all"
        )
    return 0
