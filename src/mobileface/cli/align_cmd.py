"""``mobileface align``: detect, align and crop every face image under a folder."""

from __future__ import annotations

import argparse

FALLBACK_HELP = (
    "what to write when no face is found: 'none' (default) writes nothing and lists the "
    "image as failed; 'center' writes the crop a face centred in the frame would give, as in "
    "LFW's 250x250 images, and lists it as a fallback"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from mobileface.align.face import DEFAULT_POLICY, POLICIES

    parser = subparsers.add_parser(
        "align",
        help="detect and align the faces of every image under a folder",
        description=(
            "Align every image under SRC into DST with the same relative path and stem (as "
            "lossless PNG unless --format jpg): detect faces, keep one (--policy), warp its "
            "5 landmarks onto the template for --size by a least-squares similarity "
            "transform. Images already aligned are skipped, so an interrupted run resumes. "
            "Failures are listed with their reasons in DST/align_manifest.jsonl."
        ),
    )
    parser.add_argument("src", metavar="SRC", help="folder of images (searched recursively)")
    parser.add_argument("dst", metavar="DST", help="output folder (created if needed)")
    parser.add_argument(
        "--detector", default="yunet", choices=["yunet", "dlib"], help="default: yunet"
    )
    parser.add_argument(
        "--size",
        default=None,
        help="crop size HEIGHTxWIDTH: 112x112 (default; ArcFace template), 112x96, 96x96; "
        "113x113 is the default with --loose",
    )
    parser.add_argument(
        "--loose",
        action="store_true",
        help="SqueezeFacePoseNet's loose crop instead of alignment: the detector box enlarged "
        "by 30%%, squared, resized (VGGFace2 style)",
    )
    parser.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        choices=POLICIES,
        help="which face to keep when several are found (default: prominent, the face whose "
        "size, closeness to the centre and detector score together stand out most)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument(
        "--fallback", default="none", choices=["none", "center"], help=FALLBACK_HELP
    )
    parser.add_argument("--format", default="png", choices=["png", "jpg"], help="output format")
    parser.add_argument(
        "--landmarks",
        default=None,
        choices=["onet", "yunet", "mtcnn"],
        help="yunet only: where the 5 points come from. 'onet' (default): MTCNN's ONet "
        "measures them again on YuNet's box; 'yunet': YuNet's own points; 'mtcnn': YuNet's "
        "moved by their average offset from MTCNN's",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="yunet only: YuNet's own points, without the second landmark pass by MTCNN's ONet "
        "(same as --landmarks yunet): a little faster, less precise",
    )
    parser.add_argument("--model", default=None, help="detector model file (YuNet ONNX)")
    parser.add_argument(
        "--score-threshold", type=float, default=None, help="detector score threshold"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="refuse images above this many pixels (default 40,000,000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one line of JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.align.batch import align_directory
    from mobileface.align.template import parse_size
    from mobileface.cli._format import print_json
    from mobileface.errors import UsageError

    try:
        size = parse_size(args.size) if args.size else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    kwargs: dict = {}
    yunet_only = {
        "--model": ("model_path", args.model),
        "--landmarks": ("landmarks", args.landmarks),
        "--fast": ("", args.fast or None),
    }
    for flag, (key, value) in yunet_only.items():
        if value is None:
            continue
        if args.detector != "yunet":
            raise UsageError(f"{flag} applies to yunet only")
        if key:
            kwargs[key] = value
    if args.score_threshold is not None:
        kwargs["score_threshold"] = args.score_threshold

    report = align_directory(
        args.src,
        args.dst,
        detector=args.detector,
        detector_kwargs=kwargs,
        size=size,
        policy=args.policy,
        loose=args.loose,
        fallback=args.fallback,
        workers=args.workers,
        output_format=args.format,
        max_pixels=args.max_pixels,
        precise=not args.fast,
        progress=not args.no_progress,
    )
    summary = {
        "src": str(report.src),
        "dst": str(report.dst),
        "images": report.total,
        "aligned": report.aligned,
        "skipped_already_done": report.skipped,
        "fallback": report.fallback,
        "failed": report.failed,
        "lost_fraction": round(report.lost_fraction, 6),
        "other_files_ignored": report.ignored,
        "seconds": round(report.seconds, 2),
        "images_per_second": round(report.images_per_second, 1),
        "workers": report.workers,
        "manifest": str(report.manifest),
        "failure_reasons": dict(report.reasons().most_common()),
    }
    if args.json:
        print_json(summary)
        return 0
    print(
        f"{report.total:,} images: {report.aligned:,} aligned, "
        f"{report.skipped:,} already done, {report.fallback:,} fallback, "
        f"{report.failed:,} failed ({100 * report.lost_fraction:.2f}% lost) "
        f"in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s, "
        f"{report.workers} worker{'s' if report.workers > 1 else ''})"
    )
    if report.ignored:
        print(f"{report.ignored:,} files without an image extension were ignored")
    failed = [r for r in report.problems if r.status == "failed"]
    for record in failed[:10]:
        print(f"  failed: {record.reason}")
    if len(failed) > 10:
        print(f"  ... and {len(failed) - 10:,} more")
    if report.problems:
        print(f"manifest: {report.manifest}")
    return 0
