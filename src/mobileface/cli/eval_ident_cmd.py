"""``mobileface eval-ident``: identification (1:N): rank-1/rank-5, CMC, TPIR at FPIR."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from mobileface.cli._format import format_table, print_json
from mobileface.cli.eval_cmd import (
    add_crop_arguments,
    add_model_arguments,
    add_output_arguments,
    open_cache,
    open_models,
    parse_fars,
)
from mobileface.errors import DataFormatError

DEFAULT_FPIRS = "1e-1,1e-2,1e-3"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-ident",
        help="identification (1:N): rank-1/rank-5, CMC, open-set TPIR at FPIR",
        description=(
            "Evaluate 1:N identification. The gallery and the probes are folders with one "
            "sub-folder per identity. Each gallery identity is enrolled as one template (mean "
            "of its normalised embeddings); every probe is searched by cosine similarity. "
            "Closed set: rank-1, rank-5 and the CMC over probes whose identity is enrolled. "
            "Open set: TPIR at FPIR, where non-mated searches are probes whose identity is not "
            "enrolled (see --unknown). --distractors adds images of other people to the "
            "gallery (MegaFace-style), each one its own identity."
        ),
    )
    add_model_arguments(parser)
    data = parser.add_argument_group("gallery and probes")
    data.add_argument(
        "--gallery", type=Path, required=True, metavar="DIR", help="one sub-folder per identity"
    )
    data.add_argument(
        "--probes",
        type=Path,
        metavar="DIR",
        help=(
            "one sub-folder per identity; when omitted, the first --enroll images (by name) of "
            "each gallery identity are enrolled and the others are the probes"
        ),
    )
    data.add_argument(
        "--enroll",
        type=int,
        default=1,
        metavar="N",
        help="images enrolled per identity when --probes is omitted (default 1)",
    )
    data.add_argument(
        "--distractors", type=Path, metavar="DIR", help="extra gallery images (any layout)"
    )
    data.add_argument(
        "--unknown",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help=(
            "leave this fraction of identities out of the gallery (chosen by a hash of their "
            "names, so the same every run): their probes become the non-mated searches"
        ),
    )
    add_crop_arguments(parser)
    parser.add_argument(
        "--fpir",
        default=DEFAULT_FPIRS,
        metavar="LIST",
        help=f"target FPIRs, comma-separated (default {DEFAULT_FPIRS})",
    )
    parser.add_argument(
        "--max-rank", type=int, default=20, metavar="K", help="CMC up to this rank (default 20)"
    )
    add_output_arguments(parser)
    parser.set_defaults(handler=run)


def _identity_folder(root: Path, what: str) -> list[tuple[Path, str]]:
    """``(image, identity)`` for every image of a folder-per-identity tree."""
    from mobileface.data.folders import list_image_folder

    if not root.is_dir():
        raise DataFormatError(f"{what} {root}: no such folder")
    return [(Path(p), str(i)) for p, i in list_image_folder(root)]


def _all_images(root: Path) -> list[Path]:
    from mobileface.image import IMAGE_EXTENSIONS

    if not root.is_dir():
        raise DataFormatError(f"distractors {root}: no such folder")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise DataFormatError(f"distractors {root}: no images")
    return found


def _unknown_identities(identities: set[str], fraction: float) -> set[str]:
    if not 0.0 <= fraction < 1.0:
        raise DataFormatError("--unknown must be at least 0 and below 1")
    ranked = sorted(identities, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(ranked[: int(round(fraction * len(ranked)))])


def build_split(args: argparse.Namespace):
    """Gallery, probes and distractors as ``ImageSource`` lists, and a description."""
    from mobileface.evaluation.pipeline import ImageSource

    def src(path: Path, root: Path) -> ImageSource:
        try:
            label = str(path.relative_to(root))
        except ValueError:
            label = str(path)
        return ImageSource(label, path=path)

    gallery_items = _identity_folder(args.gallery, "gallery")
    if args.probes is None:
        if args.enroll < 1:
            raise DataFormatError("--enroll must be at least 1")
        by_id: dict[str, list[Path]] = {}
        for path, ident in sorted(gallery_items, key=lambda t: (t[1], t[0].name)):
            by_id.setdefault(ident, []).append(path)
        gallery, probes = [], []
        for ident, paths in by_id.items():
            gallery += [(p, ident) for p in paths[: args.enroll]]
            probes += [(p, ident) for p in paths[args.enroll :]]
        probe_root = args.gallery
        how = f"first {args.enroll} image(s) of each identity enrolled, the rest searched"
    else:
        gallery = gallery_items
        probes = _identity_folder(args.probes, "probes")
        probe_root = args.probes
        how = "gallery and probe folders"
    unknown = _unknown_identities({i for _, i in gallery}, args.unknown)
    gallery = [(p, i) for p, i in gallery if i not in unknown]
    if not gallery:
        raise DataFormatError("the gallery is empty")
    if not probes:
        raise DataFormatError("no probes: give --probes or identities with more images")
    if unknown:
        how += f"; {len(unknown)} identities withheld from the gallery (--unknown)"
    distractors = []
    if args.distractors is not None:
        distractors = [src(p, args.distractors) for p in _all_images(args.distractors)]
    return (
        [(src(p, args.gallery), i) for p, i in gallery],
        [(src(p, probe_root), i) for p, i in probes],
        distractors,
        how,
    )


def run(args: argparse.Namespace) -> int:
    from mobileface.evaluation.identification import evaluate_identification
    from mobileface.evaluation.pipeline import EmbedOptions

    fpirs = parse_fars(args.fpir)
    if args.max_rank < 1:
        raise DataFormatError("--max-rank must be at least 1")
    gallery, probes, distractors, how = build_split(args)
    models = open_models(args)
    options = EmbedOptions(
        aligned=args.aligned,
        flip=args.flip,
        detector=args.detector,
        policy=args.policy,
        precise=not args.fast_detect,
        batch_size=args.batch_size,
        low_light=not args.no_low_light,
        crop_norm=not args.no_crop_norm,
    )
    cache = open_cache(args)
    detector = None
    if not args.aligned:
        from mobileface.evaluation.pipeline import open_detector

        detector = open_detector(args.detector, **options.detector_options())
    runs = []
    try:
        for m in models:
            runs.append(
                evaluate_identification(
                    gallery,
                    probes,
                    m.embedder,
                    options,
                    model_key=m.cache_key,
                    model_name=m.label,
                    distractors=distractors,
                    cache=cache,
                    detector=detector,
                    max_rank=args.max_rank,
                    fpirs=fpirs,
                    progress=False if args.no_progress else None,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    results = [r.to_dict() | {"split": how} for r in runs]
    if args.report is not None:
        from mobileface.evaluation.report import IdentificationEntry, write_identification_report

        entries = [
            IdentificationEntry(r.model, r.metrics, {"failed_images": r.failed_images})
            for r in runs
        ]
        files = write_identification_report(
            entries, args.report, title="Identification", description=f"{args.gallery}: {how}."
        )
        for out in results:
            out["report"] = {k: str(v) for k, v in files.items()}
    if args.json:
        print_json(results[0] if len(results) == 1 else {"models": results})
        return 0
    first = runs[0].metrics
    print(
        f"{args.gallery}: {how}; {first.gallery_identities:,} identities enrolled, "
        f"{first.distractors:,} distractors, {first.mated_probes:,} mated and "
        f"{first.nonmated_probes:,} non-mated probes"
    )
    fp = [t.fpir for t in first.tpir_at_fpir]
    from mobileface.evaluation.metrics import far_key

    headers = ["model", "rank-1", "rank-5"] + [f"TPIR@{far_key(f)}" for f in fp] + ["failed"]
    rows = []
    for r in runs:
        m = r.metrics
        rows.append(
            [r.model, _pct(m.rank1), _pct(m.rank5)]
            + [_pct(t.tpir) for t in m.tpir_at_fpir]
            + [r.failed_images]
        )
    print(format_table(headers, rows))
    for t in first.tpir_at_fpir:
        if t.reason:
            print(f"TPIR at FPIR {far_key(t.fpir)}: not reported, {t.reason}")
    for r in runs:
        if r.failed_images:
            print(
                f"{r.model}: {r.failed_images} failed images ({r.unusable_probes} probes unusable)"
            )
        print(f"{r.model}: {r.embedded_images} images embedded, {r.cached_images} from the cache")
    if results and "report" in results[0]:
        print(f"report: {results[0]['report'].get('markdown')}")
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"
