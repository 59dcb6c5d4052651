"""``mobileface demo``: the bundled model on LFW: a few verifications, then the benchmark."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mobileface.cli._format import format_table
from mobileface.errors import DataFormatError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="verify a few LFW pairs and run the LFW benchmark with the bundled model",
        description=(
            "The main job on the bundled defaults: verify a few LFW photo pairs one by one (as "
            "`mobileface verify` does: detect, align, embed, decide at the calibrated threshold), "
            "then run the LFW View 2 benchmark end to end from the photos (as `mobileface eval "
            "--flip` does: 6,000 pairs, 10-fold accuracy, AUC, EER, TAR at FAR) and write its "
            "report with the ROC plot. Needs LFW under $MOBILEFACE_DATA/lfw (or --lfw). "
            "Embeddings are cached, so a second run takes seconds."
        ),
    )
    parser.add_argument(
        "--model", "-m", help="bundled weights name, .onnx or .pt (default: the bundled default)"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="M",
        help="another model to benchmark side by side (repeatable)",
    )
    parser.add_argument(
        "--lfw",
        type=Path,
        help="LFW folder: images/ and pairs.txt (default $MOBILEFACE_DATA/lfw)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("mobileface-demo"),
        help="folder for the benchmark report and ROC plot (default ./mobileface-demo)",
    )
    parser.add_argument(
        "--pairs", type=int, default=3, metavar="N", help="same and different pairs to verify (3)"
    )
    parser.add_argument("--no-benchmark", action="store_true", help="only verify the pairs")
    parser.add_argument(
        "--cache", type=Path, help="embedding cache file (default: the mobileface cache folder)"
    )
    parser.add_argument(
        "--fast-detect", action="store_true", help="one-view landmarks in the benchmark (faster)"
    )
    parser.set_defaults(handler=run)


def lfw_folder(args: argparse.Namespace) -> Path:
    from mobileface.paths import data_dir

    folder = args.lfw or data_dir() / "lfw"
    for need in ("images", "pairs.txt"):
        if not (folder / need).exists():
            raise DataFormatError(
                f"{folder / need}: not found; the demo needs LFW (pass --lfw DIR or set "
                "MOBILEFACE_DATA to the folder holding lfw/)"
            )
    return folder


def pick_pairs(lfw: Path, count: int) -> list:
    """``count`` same and ``count`` different pairs of View 2, spread over its folds."""
    from mobileface.data.pairs import read_pairs

    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    same = [p for p in pairs if p.same]
    different = [p for p in pairs if not p.same]
    same, different = (group[:: max(1, len(group) // count)][:count] for group in (same, different))
    return [p for pair in zip(same, different, strict=True) for p in pair]


def verify_pairs(args: argparse.Namespace, lfw: Path) -> int:
    """Verify each picked pair; returns how many decisions were right."""
    from mobileface.evaluation.models import default_model_spec
    from mobileface.runtime import open_embedder
    from mobileface.runtime.verifier import FALLBACK_THRESHOLD, FaceVerifier

    verifier = FaceVerifier(
        open_embedder(args.model or default_model_spec()), fallback_threshold=FALLBACK_THRESHOLD
    )
    pairs = pick_pairs(lfw, args.pairs)
    verifier.verify(pairs[0].image_a, pairs[0].image_b)  # warm-up: the detector loads
    rows, right = [], 0
    for pair in pairs:
        result = verifier.verify(pair.image_a, pair.image_b)
        right += result.same == pair.same
        rows.append(
            [
                pair.image_a.stem,
                pair.image_b.stem,
                f"{result.score:.3f}",
                "same" if result.same else "different",
                "same" if pair.same else "different",
                "ok" if result.same == pair.same else "WRONG",
                f"{result.timings['total']:.1f}",
            ]
        )
    print(
        f"Verifying LFW pairs with {verifier.embedder.name} (threshold {verifier.threshold:.3f}, "
        f"{verifier.threshold_source}):"
    )
    headers = ["photo A", "photo B", "score", "decision", "truth", "", "ms"]
    print(format_table(headers, rows))
    print(f"{right} of {len(rows)} decisions right\n")
    return right


def benchmark(args: argparse.Namespace, lfw: Path) -> int:
    from mobileface.cli import build_parser
    from mobileface.evaluation.models import default_model_spec

    argv = ["eval", "--pairs", str(lfw / "pairs.txt"), "--images", str(lfw / "images")]
    argv += ["--flip", "--report", str(args.out)]
    for model in [args.model or default_model_spec()] + args.compare:
        argv += ["--model", model]
    if args.fast_detect:
        argv.append("--fast-detect")
    if args.cache:
        argv += ["--cache", str(args.cache)]
    eval_args = build_parser().parse_args(argv)
    print("LFW View 2 benchmark, end to end from the photos:")
    start = time.perf_counter()
    status = eval_args.handler(eval_args)
    print(f"\nbenchmark: {time.perf_counter() - start:.0f} s; ROC plot: {args.out / 'roc.png'}")
    return status


def run(args: argparse.Namespace) -> int:
    if args.pairs < 0:
        raise DataFormatError("--pairs must be at least 0")
    lfw = lfw_folder(args)
    if args.pairs:
        verify_pairs(args, lfw)
    if args.no_benchmark:
        return 0
    return benchmark(args, lfw)
