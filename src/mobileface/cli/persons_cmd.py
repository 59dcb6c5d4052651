"""``mobileface persons``: list, show, remove and re-embed a gallery's persons; check it, and
copy it to another backend."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    from mobileface.gallery.pipeline import add_encoder_arguments
    from mobileface.gallery.store import DB_HELP

    parser = subparsers.add_parser(
        "persons",
        help="list, show, remove or re-embed the persons of a gallery; check or copy it",
        description="Manage the persons enrolled in a gallery (a SQLite file or a PostgreSQL "
        "database).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, description: str | None = None):
        sub = actions.add_parser(name, help=help_text, description=description or help_text)
        sub.add_argument("--db", required=True, help=f"the gallery: {DB_HELP}")
        return sub

    listing = action("list", "list the enrolled persons")
    listing.add_argument("--name", help="only persons with this exact name")
    listing.add_argument("--json", action="store_true", help="print one JSON list on one line")
    listing.set_defaults(handler=run_list)

    show = action(
        "show",
        "show persons with their faces",
        "Show persons, each named by id or by exact name (a name several persons share is "
        "refused, listing their ids), with their enrolled faces.",
    )
    show.add_argument("refs", nargs="+", metavar="NAME|ID", help="a person's id or exact name")
    show.add_argument("--json", action="store_true", help="print one JSON document on one line")
    show.set_defaults(handler=run_show)

    remove = action(
        "remove",
        "remove persons with all their faces (and kept photos)",
        "Remove persons, each named by id or by exact name (a name several persons share is "
        "refused, listing their ids), with all their faces and kept photos.",
    )
    remove.add_argument("refs", nargs="+", metavar="NAME|ID", help="a person's id or exact name")
    remove.set_defaults(handler=run_remove)

    check = action(
        "check",
        "check the gallery: integrity, schema version, models and their faces",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object on one line")
    check.set_defaults(handler=run_check)

    reembed = action(
        "reembed",
        "embed the gallery again with a new model",
        "Embed every face of the gallery's current model again with --model, keeping each "
        "face's person. Images come from photos kept at enrolment, else from files under "
        "--images whose SHA-256 matches the one recorded. Safe to interrupt and rerun.",
    )
    reembed.add_argument(
        "--from-model", metavar="NAME@VERSION", help="the model to re-embed (if several)"
    )
    reembed.add_argument(
        "--images", nargs="+", default=[], metavar="DIR", help="folders holding the photos"
    )
    reembed.add_argument(
        "--drop-old",
        action="store_true",
        help="delete the old model's faces once every one of them is re-embedded",
    )
    add_encoder_arguments(reembed)
    reembed.set_defaults(handler=run_reembed)

    copy = action(
        "copy",
        "copy the whole gallery into another, empty one (SQLite <-> PostgreSQL)",
        "Copy every person, face (embedding, model, source hash) and kept photo of --db into "
        "--to, keeping their ids, in one transaction; then check that the counts agree "
        "(persons, photos, faces of each model, id counters). --to is created if missing and "
        "must hold no persons.",
    )
    copy.add_argument("--to", required=True, metavar="DB", help=f"the target: {DB_HELP}")
    copy.add_argument("--json", action="store_true", help="print one JSON object on one line")
    copy.set_defaults(handler=run_copy)


def _store(args: argparse.Namespace):
    from mobileface.gallery import open_store

    return open_store(args.db, create=False)


def run_list(args: argparse.Namespace) -> int:
    from mobileface.cli._format import format_table, print_json

    with _store(args) as store:
        people = store.persons(name=args.name)
    if args.json:
        print_json([p.to_dict() for p in people])
        return 0
    if not people:
        print("no persons enrolled")
        return 0
    rows = []
    for p in people:
        models = sorted({f.model.name for f in p.faces})
        rows.append([p.id, p.name, len(p.faces), ", ".join(models), p.created_at[:19]])
    print(format_table(["id", "name", "faces", "models", "enrolled (UTC)"], rows))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from mobileface.cli._format import print_json

    with _store(args) as store:
        people = [store.find_person(ref) for ref in args.refs]
    if args.json:
        records = [p.to_dict() for p in people]
        print_json(records if len(records) > 1 else records[0])
        return 0
    print("\n\n".join(describe_person(p) for p in people))
    return 0


def describe_person(person: Any) -> str:
    """A person as a few lines of text and a table of their faces."""
    from mobileface.cli._format import format_table

    faces = len(person.faces)
    lines = [
        f"person {person.id} {person.name!r}: {faces} face{'' if faces == 1 else 's'}, "
        f"enrolled {person.created_at[:19].replace('T', ' ')} UTC"
    ]
    if person.metadata:
        lines.append("metadata: " + ", ".join(f"{k}={v}" for k, v in person.metadata.items()))
    if person.photos:
        lines.append(f"photos kept: {person.photos}")
    if person.faces:
        rows = [
            [
                f.id,
                str(f.model),
                "-" if f.det_score is None else f"{f.det_score:.3f}",
                "-" if f.box is None else " ".join(f"{v:.0f}" for v in f.box),
                f.image_sha256[:16],
                f.created_at[:19].replace("T", " "),
            ]
            for f in person.faces
        ]
        headers = ["face", "model", "detection", "box x1 y1 x2 y2", "image SHA-256", "enrolled"]
        lines.append(format_table(headers, rows))
    return "\n".join(lines)


def run_remove(args: argparse.Namespace) -> int:
    with _store(args) as store:
        found = [store.find_person(ref) for ref in args.refs]  # all found before any removal
        people = list({p.id: p for p in found}.values())
        for person in people:
            store.remove_person(person.id)
            print(f"removed person {person.id} {person.name!r} ({len(person.faces)} faces)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from mobileface.cli._format import print_json

    with _store(args) as store:
        report = {
            "path": store.location,
            "integrity": store.integrity_check(),
            "schema_version": store.schema_version,
            "persons": store.count_persons(),
            "faces": store.count_faces(),
            "models": [m.to_dict() for m in store.models()],
        }
    if args.json:
        print_json(report)
    else:
        print(
            f"{report['path']}: integrity {report['integrity']}, schema v{report['schema_version']}"
        )
        print(f"{report['persons']} persons, {report['faces']} faces")
        for m in report["models"]:
            print(
                f"  {m['model']}@{m['model_version']}: {m['faces']} faces of {m['persons']} "
                f"persons, {m['dim']}-d"
            )
    return 0 if report["integrity"] == "ok" else 1


def run_reembed(args: argparse.Namespace) -> int:
    from mobileface.gallery import Gallery, ModelKey
    from mobileface.gallery.pipeline import encoder_from_args

    source = ModelKey.parse(args.from_model) if args.from_model else None
    with Gallery(_store(args), encoder_from_args(args)) as gallery:

        def progress(done: int, total: int) -> None:
            if sys.stderr.isatty() and (done % 50 == 0 or done == total):
                print(f"\r{done}/{total} faces", end="" if done < total else "\n", file=sys.stderr)

        report = gallery.reembed(source, args.images, drop_old=args.drop_old, progress=progress)
    print(
        f"{report.source} -> {report.target}: {report.embedded} faces embedded, "
        f"{report.already} already done, {len(report.missing)} without a photo or file, "
        f"{len(report.failed)} failed"
    )
    for face_id, sha in report.missing[:20]:
        print(f"  face {face_id}: no kept photo and no file with SHA-256 {sha}", file=sys.stderr)
    for label, reason in report.failed[:20]:
        print(f"  {label}: {reason}", file=sys.stderr)
    if report.dropped:
        print(f"removed {report.dropped} faces of {report.source}")
    elif args.drop_old:
        print(f"kept the faces of {report.source}: not every one could be re-embedded")
    return 0 if not report.missing and not report.failed else 1


def run_copy(args: argparse.Namespace) -> int:
    from mobileface.cli._format import print_json
    from mobileface.gallery import copy_gallery, open_store

    def progress(table: str, done: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{table}: {done:,}", end="", file=sys.stderr, flush=True)

    with _store(args) as source, open_store(args.to) as target:
        report = copy_gallery(source, target, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print_json(report.to_dict())
        return 0
    faces = sum(report.faces.values())
    models = ", ".join(f"{m}: {n:,}" for m, n in report.faces.items())
    print(
        f"copied {report.persons:,} persons, {faces:,} faces{f' ({models})' if models else ''} "
        f"and {report.photos:,} photos from {report.source} to {report.target} in "
        f"{report.seconds:.1f} s; counts checked"
    )
    return 0
