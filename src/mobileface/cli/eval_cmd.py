"""``mobileface eval``: verification by the field's protocols (LFW 10-fold, ROC, EER, TAR@FAR)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mobileface.cli._format import format_table, print_json
from mobileface.errors import DataFormatError

DEFAULT_FARS = "1e-1,1e-2,1e-3,1e-4"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="verification accuracy on a pair list (LFW protocol), ROC, EER, TAR@FAR",
        description=(
            "Evaluate face verification on a pair list: the LFW 10-fold protocol (threshold "
            "chosen on nine folds, accuracy on the tenth; mean and standard deviation) and, over "
            "all pairs, ROC AUC, EER, TAR at each FAR the number of different pairs supports "
            "(n_different * FAR >= 1), and the best threshold. Images are photos unless "
            "--aligned: the detector and 5-point alignment run first; where no face is found "
            "the image is centre-cropped as if the face sat where it does in LFW's photos, and "
            "counted. Unreadable images are counted and their pairs scored as non-matches. "
            "Embeddings are cached per model, preprocessing and image content."
        ),
    )
    add_model_arguments(parser)
    data = parser.add_argument_group("pairs (one of --pairs with --images, or --bin)")
    data.add_argument("--pairs", type=Path, metavar="PAIRS", help="pair list (LFW pairs.txt)")
    data.add_argument("--images", type=Path, metavar="DIR", help="folder holding the images")
    data.add_argument(
        "--bin", type=Path, metavar="FILE", help="InsightFace .bin set (lfw, cfp_fp, agedb_30)"
    )
    add_crop_arguments(parser)
    parser.add_argument(
        "--far",
        default=DEFAULT_FARS,
        metavar="LIST",
        help=f"target FARs, comma-separated (default {DEFAULT_FARS})",
    )
    parser.add_argument(
        "--pose",
        action="store_true",
        help="also split pairs by pose (yaw from the 5 landmarks) and give the EER per bin",
    )
    parser.add_argument(
        "--yaw-threshold",
        type=float,
        default=30.0,
        metavar="DEG",
        help="|yaw| below this is frontal, otherwise profile (default 30)",
    )
    parser.add_argument(
        "--calibrate",
        nargs="?",
        const="",
        default=None,
        metavar="CARD",
        help=(
            "write the thresholds at the target FARs into a model card JSON (default: the "
            "model's own card, for an ONNX or .pt file a .json beside it)"
        ),
    )
    add_output_arguments(parser)
    parser.set_defaults(handler=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        "-m",
        action="append",
        metavar="M",
        help=(
            "weights name (default: the bundled default weights), training checkpoint (.pt) "
            "or ONNX embedder; repeat to compare several models side by side"
        ),
    )
    group.add_argument(
        "--input-size", metavar="HxW", help="model input size for an ONNX model (e.g. 112x112)"
    )
    group.add_argument(
        "--mean", metavar="M", help="input mean, one value or R,G,B (e.g. 127.5); ONNX models"
    )
    group.add_argument(
        "--std", metavar="S", help="input standard deviation, one value or R,G,B (e.g. 128)"
    )
    group.add_argument(
        "--bgr", action="store_const", const=True, default=None, help="the model expects BGR input"
    )
    group.add_argument(
        "--threads",
        type=int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="inference threads (default: up to 4)",
    )
    group.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)"
    )


def add_crop_arguments(parser: argparse.ArgumentParser) -> None:
    from mobileface.align.face import DEFAULT_POLICY, POLICIES

    group = parser.add_argument_group("crops")
    group.add_argument(
        "--aligned",
        action="store_true",
        help="images are aligned crops already (as `mobileface align` writes them)",
    )
    group.add_argument(
        "--flip",
        action="store_true",
        help="embedding = sum of the crop's and its mirror image's embeddings",
    )
    group.add_argument(
        "--detector", default="yunet", metavar="NAME", help="face detector (default yunet)"
    )
    group.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        choices=POLICIES,
        help="which face to keep when a photo has several (default prominent: size, position "
        "and detector score together)",
    )
    group.add_argument(
        "--fast-detect",
        action="store_true",
        help=(
            "YuNet landmarks from one view instead of the average over 6 (image and mirror at "
            "3 scales) that `mobileface align` uses: faster, slightly less accurate"
        ),
    )
    group.add_argument(
        "--no-low-light",
        action="store_true",
        help=(
            "one detection pass only: no second YuNet pass on a contrast-restored copy of a "
            "photo without a face (the pipeline before issue 17, for comparisons)"
        ),
    )
    group.add_argument(
        "--no-crop-norm",
        action="store_true",
        help=(
            "embed dark or flat aligned crops as they are, without restoring their contrast "
            "first (the pipeline before issue 17, for comparisons)"
        ),
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json",
        action="store_true",
        help='print one line of JSON (with several models: {"models": [one per model]})',
    )
    group.add_argument(
        "--report",
        type=Path,
        metavar="OUT",
        help="write plots (PNG) and a summary (Markdown and HTML) into this folder",
    )
    group.add_argument(
        "--cache",
        type=Path,
        metavar="FILE",
        help="embedding cache (default: evaluation.sqlite in the mobileface cache folder)",
    )
    group.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    group.add_argument(
        "--no-progress", action="store_true", help="no progress bars (they go to stderr)"
    )


def parse_fars(text: str) -> list[float]:
    try:
        fars = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataFormatError(f"--far: not a list of numbers: {text!r}") from None
    if not fars or any(not 0.0 < f < 1.0 for f in fars):
        raise DataFormatError(f"--far: rates must lie between 0 and 1: {text!r}")
    return sorted(set(fars), reverse=True)


def parse_channels(text: str | None, option: str):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise DataFormatError(f"{option}: expected a number or R,G,B, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 3:
        return tuple(values)
    raise DataFormatError(f"{option}: expected one value or three (R,G,B), got {text!r}")


def open_models(args: argparse.Namespace) -> list:
    from mobileface.align.template import parse_size
    from mobileface.evaluation.models import open_model

    size = None
    if args.input_size:
        try:
            size = parse_size(args.input_size)
        except ValueError as exc:
            raise DataFormatError(f"--input-size: {exc}") from None
    if args.threads < 1 or args.batch_size < 1:
        raise DataFormatError("--threads and --batch-size must be at least 1")
    mean = parse_channels(args.mean, "--mean")
    std = parse_channels(args.std, "--std")
    models = [
        open_model(spec, threads=args.threads, input_size=size, mean=mean, std=std, bgr=args.bgr)
        for spec in (args.model or [None])
    ]
    labels = [m.label for m in models]
    for m in models:  # two files with the same stem: name them by path
        if labels.count(m.label) > 1:
            m.label = m.spec
    return models


def open_cache(args: argparse.Namespace):
    if args.no_cache:
        return None
    from mobileface.evaluation.cache import EmbeddingCache

    return EmbeddingCache(args.cache)


def load_pair_set(args: argparse.Namespace):
    from mobileface.evaluation.verification import pairs_from_bin, pairs_from_list

    if args.bin is not None:
        if args.pairs is not None or args.images is not None:
            raise DataFormatError("give either --bin or --pairs with --images, not both")
        if not args.bin.is_file():
            raise DataFormatError(f"{args.bin}: no such file")
        args.aligned = True  # .bin sets hold aligned 112x112 crops
        return pairs_from_bin(args.bin)
    if args.pairs is None or args.images is None:
        raise DataFormatError("give --pairs and --images (or --bin FILE)")
    if not args.pairs.is_file():
        raise DataFormatError(f"{args.pairs}: no such pair file")
    if not args.images.is_dir():
        raise DataFormatError(f"{args.images}: no such image folder")
    from mobileface.data.pairs import read_pairs

    # Missing images are kept (and counted as failed, their pairs scored as non-matches)
    # rather than dropped; only a folder with none of the images is refused outright.
    pairs = read_pairs(args.pairs, args.images, missing="keep")
    pair_set = pairs_from_list(pairs, args.images, args.pairs.name)
    if not any(s.path is not None and s.path.is_file() for s in pair_set.sources):
        raise DataFormatError(f"none of the images of {args.pairs} is under {args.images}")
    return pair_set


def run(args: argparse.Namespace) -> int:
    from mobileface.evaluation.pipeline import EmbedOptions
    from mobileface.evaluation.verification import evaluate_verification

    fars = parse_fars(args.far)
    pair_set = load_pair_set(args)
    models = open_models(args)
    if args.calibrate is not None and args.calibrate and len(models) > 1:
        raise DataFormatError("--calibrate CARD names one card: evaluate one model at a time")
    options = EmbedOptions(
        aligned=args.aligned,
        flip=args.flip,
        detector=args.detector,
        policy=args.policy,
        precise=not args.fast_detect,
        batch_size=args.batch_size,
        landmarks=args.pose,
        low_light=not args.no_low_light,
        crop_norm=not args.no_crop_norm,
    )
    progress = False if args.no_progress else None
    cache = open_cache(args)
    detector = None
    if not args.aligned or args.pose:
        from mobileface.evaluation.pipeline import open_detector

        detector = open_detector(args.detector, **options.detector_options())
    runs = []
    try:
        for m in models:
            runs.append(
                evaluate_verification(
                    pair_set,
                    m.embedder,
                    options,
                    model_key=m.cache_key,
                    model_name=m.label,
                    cache=cache,
                    detector=detector,
                    fars=fars,
                    pose=args.pose,
                    yaw_threshold=args.yaw_threshold,
                    progress=progress,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    results = [r.to_dict() for r in runs]
    if args.calibrate is not None:
        for m, r, out in zip(models, runs, results, strict=True):
            out["calibration"] = calibrate_card(args, m, r)
    if args.report is not None:
        files = write_report(args, runs)
        for out in results:
            out["report"] = {k: str(v) for k, v in files.items()}
    if args.json:
        print_json(results[0] if len(results) == 1 else {"models": results})
    else:
        print_text(runs, results, args)
    return 0


def calibrate_card(args: argparse.Namespace, model, run) -> dict:
    from mobileface.evaluation.calibration import calibrate, write_thresholds
    from mobileface.evaluation.models import card_path_for

    path = Path(args.calibrate) if args.calibrate else card_path_for(model)
    cal = calibrate(
        run.scores,
        run.pair_set.same,
        [t.far for t in run.metrics.tar_at_far],
        dataset=run.pair_set.name,
        aligned=run.options.aligned,
        flip=run.options.flip,
        detector=None if run.options.aligned else run.options.detector,
        model_sha256=model.cache_key.get("model_sha256"),
    )
    write_thresholds(path, cal)
    return {"card": str(path), **cal.to_dict()}


def write_report(args: argparse.Namespace, runs: list) -> dict:
    from mobileface.evaluation.report import VerificationEntry, write_verification_report

    entries = [
        VerificationEntry(
            r.model,
            r.scores,
            r.pair_set.same,
            r.metrics,
            {
                "failed_images": r.embeddings.failed,
                "failed": r.failures(),
                "pose": r.pose,
            },
        )
        for r in runs
    ]
    first = runs[0]
    o = first.options
    crops = "aligned crops" if o.aligned else f"photos ({o.detector}, {o.policy} face)"
    description = (
        f"{first.pair_set.name}: {len(first.pair_set):,} pairs, "
        f"{len(first.pair_set.sources):,} images, {crops}"
        f"{', flip' if first.options.flip else ''}; folds: {first.pair_set.folds_from}."
    )
    return write_verification_report(
        entries, args.report, title=f"Verification: {first.pair_set.name}", description=description
    )


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def print_text(runs: list, results: list[dict], args: argparse.Namespace) -> None:
    first = runs[0]
    fars = [t.far for t in first.metrics.tar_at_far]
    from mobileface.evaluation.metrics import far_key

    headers = ["model", "accuracy", "± std", "AUC", "EER"]
    headers += [f"TAR@{far_key(f)}" for f in fars] + ["threshold", "failed"]
    rows = []
    for r in runs:
        m = r.metrics
        tars = [_pct(t.tar) for t in m.tar_at_far]
        row = [r.model, _pct(m.accuracy), _pct(m.accuracy_std), f"{m.auc:.4f}", _pct(m.eer)]
        rows.append(row + tars + [f"{m.threshold:.4f}", r.embeddings.failed])
    o = first.options
    crops = "aligned crops" if o.aligned else f"photos, detector {o.detector}, {o.policy} face"
    print(
        f"{first.pair_set.name}: {len(first.pair_set):,} pairs ({first.metrics.same_pairs:,} "
        f"same), {len(first.pair_set.sources):,} images; {crops}"
        f"{', flip' if first.options.flip else ''}; folds: {first.pair_set.folds_from}"
    )
    print(format_table(headers, rows))
    for t in first.metrics.tar_at_far:
        if t.reason:
            print(f"TAR at FAR {far_key(t.far)}: not reported, {t.reason}")
    for r in runs:
        e = r.embeddings
        if e.failed:
            print(
                f"{r.model}: {e.failed} failed images ({e.count('no_face')} without a face, "
                f"centre-cropped; {e.count('unreadable')} unreadable, "
                f"{r.unscorable_pairs} pairs scored as non-matches)"
            )
            for name, reason in list(r.failures().items())[:10]:
                print(f"  {name}: {reason}")
            if e.failed > 10:
                print(f"  ... and {e.failed - 10} more (see --json)")
        print(f"{r.model}: {e.embedded} images embedded, {e.from_cache} from the cache")
        if r.pose is not None:
            pose_rows = [
                [name, b["same_pairs"], b["different_pairs"], _pct(b["eer"])]
                for name, b in r.pose["bins"].items()
            ]
            print(
                f"{r.model}: pose split (|yaw| < {r.pose['yaw_threshold']:g} deg is frontal; "
                f"{r.pose['pairs_without_pose']} pairs without landmarks)"
            )
            print(format_table(["bin", "same", "different", "EER"], pose_rows))
    for out in results:
        if "calibration" in out:
            print(f"{out['model']}: thresholds written to {out['calibration']['card']}")
    if results and "report" in results[0]:
        print(f"report: {results[0]['report'].get('markdown')}", file=sys.stdout)
