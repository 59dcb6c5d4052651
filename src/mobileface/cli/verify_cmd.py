"""``mobileface verify``: are the faces in two photos the same person?"""

from __future__ import annotations

import argparse
import json
import sys


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--threads`` and the preprocessing overrides shared by verify and embed."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        "-m",
        help="bundled weights name, .onnx file or training checkpoint .pt (default: the "
        "bundled default weights)",
    )
    group.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    group.add_argument("--input-size", help="HxW, for ONNX files that do not say it")
    group.add_argument("--mean", help="pixel mean: one number or three (other projects' models)")
    group.add_argument("--std", help="pixel std: one number or three")
    group.add_argument("--bgr", action="store_true", default=None, help="model takes BGR input")
    group.add_argument("--detector", default="yunet", help="face detector (default yunet)")
    group.add_argument(
        "--policy",
        default="largest",
        choices=["largest", "central", "score"],
        help="which face when a photo has several (default largest)",
    )


def open_model(args: argparse.Namespace):
    from mobileface import weights
    from mobileface.errors import ModelFileError
    from mobileface.runtime import open_embedder

    spec = args.model or weights.default_weights_name()
    if not spec:
        raise ModelFileError(f"no --model given and {weights.NO_WEIGHTS_HINT}")
    size = None
    if args.input_size:
        from mobileface.align import parse_size

        size = parse_size(args.input_size)
    return open_embedder(
        spec, threads=args.threads, input_size=size, mean=args.mean, std=args.std, bgr=args.bgr
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="decide whether two photos show the same person",
        description=(
            "Detect and align the face in each photo, embed both and compare them by cosine "
            "similarity. The decision threshold is --threshold, else the model's calibrated "
            "threshold at FAR 1e-3 (ONNX metadata or model card), else a generic fallback "
            "(printed as a warning). Exit status 0 whatever the decision; 1 on an error such "
            "as a photo with no face."
        ),
    )
    parser.add_argument("image_a", metavar="A", help="first photo")
    parser.add_argument("image_b", metavar="B", help="second photo")
    parser.add_argument("--threshold", type=float, help="cosine decision threshold")
    parser.add_argument(
        "--far",
        default="1e-3",
        choices=["1e-3", "1e-4"],
        help="calibrated operating point to decide at (default 1e-3)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.align import create_detector
    from mobileface.runtime.verifier import FALLBACK_THRESHOLD, FaceVerifier

    embedder = open_model(args)
    verifier = FaceVerifier(
        embedder,
        detector=create_detector(args.detector),
        threshold=args.threshold,
        policy=args.policy,
        far_key=f"far_{args.far}",
        fallback_threshold=FALLBACK_THRESHOLD,
    )
    if verifier.threshold_source.startswith("fallback"):
        print(
            f"warning: {embedder.name} has no calibrated threshold; deciding at the generic "
            f"{FALLBACK_THRESHOLD} (pass --threshold, or calibrate the model)",
            file=sys.stderr,
        )
    result = verifier.verify(args.image_a, args.image_b)
    if args.json:
        out = {"model": embedder.name, **result.to_dict()}
        print(json.dumps(out, indent=2))
        return 0
    verdict = "same person" if result.same else "different people"
    print(
        f"{verdict}: score {result.score:.4f} {'>=' if result.same else '<'} threshold "
        f"{result.threshold:.4f} ({result.threshold_source})"
    )
    t = result.timings
    print(
        f"time: {t['total']:.1f} ms (decode {t['decode']:.1f}, detect {t['detect']:.1f}, "
        f"align {t['align']:.1f}, embed {t['embed']:.1f})"
    )
    return 0
