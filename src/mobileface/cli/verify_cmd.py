"""``mobileface verify``: are the faces in two photos the same person?"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mobileface.runtime.precision import PrecisionChoice
    from mobileface.runtime.verifier import VerificationResult


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--threads`` and the preprocessing overrides shared by verify and embed."""
    from mobileface.align.face import DEFAULT_POLICY, POLICIES

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        "-m",
        help="bundled weights name ('mobileface models --weights' lists them; default: the "
        "bundled default weights), .onnx file or training checkpoint .pt; not a zoo "
        "architecture name",
    )
    group.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    group.add_argument("--input-size", help="HxW, for ONNX files that do not say it")
    group.add_argument("--mean", help="pixel mean: one number or three (other projects' models)")
    group.add_argument("--std", help="pixel std: one number or three")
    group.add_argument("--bgr", action="store_true", default=None, help="model takes BGR input")
    group.add_argument("--detector", default="yunet", help="face detector (default yunet)")
    group.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        choices=POLICIES,
        help="which face when a photo has several (default prominent: size, position and "
        "detector score together)",
    )


def open_model(args: argparse.Namespace, spec: str | None = None):
    """The embedder ``spec`` (default ``--model``, else the default weights) names."""
    from mobileface import weights
    from mobileface.errors import ModelFileError
    from mobileface.runtime import open_embedder

    spec = spec or args.model or weights.default_weights_name()
    if not spec:
        raise ModelFileError(f"no --model given and {weights.NO_WEIGHTS_HINT}")
    size = None
    if args.input_size:
        from mobileface.align import parse_size

        size = parse_size(args.input_size)
    return open_embedder(
        spec, threads=args.threads, input_size=size, mean=args.mean, std=args.std, bgr=args.bgr
    )


def parse_far(text: str) -> str:
    """``--far`` value -> card key (``1e-4`` -> ``far_1e-4``); a usage error if it is no rate."""
    from mobileface.errors import OperatingPointError
    from mobileface.runtime.verifier import operating_point_key

    try:
        return operating_point_key(text)
    except OperatingPointError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="decide whether two photos show the same person",
        description=(
            "Detect and align the face in each photo, embed both and compare them by cosine "
            "similarity. The decision threshold is --threshold, else the model's threshold "
            "calibrated at false-accept rate --far (default 1e-3: about 1 in 1,000 pairs of "
            "different people accepted; from the model card, else the ONNX metadata), else a "
            "generic fallback (printed as a warning). The output names the operating point: "
            "the FAR and the TAR (share of same-person pairs accepted) the calibration "
            "measured there. Times are per verification after a warm-up; the one-off cold "
            "start (loading the models, first inference) is reported apart. Exit status 0 "
            "whatever the decision; 1 on an error such as a photo with no face."
        ),
    )
    parser.add_argument("image_a", metavar="A", help="first photo")
    parser.add_argument("image_b", metavar="B", help="second photo")
    point = parser.add_mutually_exclusive_group()
    point.add_argument("--threshold", type=float, help="cosine decision threshold")
    point.add_argument(
        "--far",
        type=parse_far,
        metavar="RATE",
        help="decide at the threshold calibrated at this false-accept rate, e.g. 1e-4 "
        "(stricter) (default 1e-3); one the model was not calibrated at is an error listing "
        "those it was ('mobileface models --weights' shows them for the bundled weights)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    add_model_arguments(parser)
    add_speed_arguments(parser)
    parser.set_defaults(handler=run)


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--detect-sides`` and ``--landmarks``, shared by verify and bench."""
    from mobileface.align.yunet import DETECT_SIDES, VERIFY_YUNET

    default = ",".join(map(str, DETECT_SIDES))
    group = parser.add_argument_group("speed")
    group.add_argument(
        "--precision",
        choices=["auto", "fp32", "int8"],
        help="the bundled default weights in fp32 or int8 (default: $MOBILEFACE_PRECISION, else "
        "auto: int8 where the CPU has VNNI or AMX-INT8 and the int8 model card's LFW accuracy "
        "is at most 0.3 points below fp32's); not with --model",
    )
    group.add_argument(
        "--detect-sides",
        type=_sides,
        default=DETECT_SIDES,
        metavar="N[,N...]",
        help=f"search a photo on copies shrunk to these longer sides first, smallest first, "
        f"then measure small faces again at full size (default {default}; 0: search the whole "
        "photo, as before)",
    )
    group.add_argument(
        "--landmarks",
        choices=["yunet", "onet"],
        default=VERIFY_YUNET["landmarks"],
        help="yunet only: 'yunet' (default) aligns on YuNet's own points; 'onet' measures them "
        "again with MTCNN's ONet, as 'mobileface align' does: more accurate (LFW View 2 "
        "through verify's steps, default weights: +0.3 to +0.5 points), about 1 ms more per pair",
    )


def _sides(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N[,N...] pixels, got {text!r}") from None
    if values == (0,):
        return ()
    if not values or min(values) < 32:
        raise argparse.ArgumentTypeError(f"sides must be at least 32 pixels (or 0), got {text!r}")
    return values


def choose_model(args: argparse.Namespace) -> tuple[Any, PrecisionChoice | None]:
    """The embedder for ``args`` and the precision pick (``None`` when ``--model`` names one).

    Without ``--model`` the bundled default weights run in the precision
    :func:`mobileface.runtime.precision.choose_precision` picks for this machine.
    """
    from mobileface.errors import UsageError

    precision = getattr(args, "precision", None)
    if args.model:
        if precision:
            raise UsageError(
                "--precision picks the bundled default weights' precision; with --model the "
                "named model runs as it is"
            )
        return open_model(args), None
    from mobileface.runtime.precision import choose_precision

    choice = choose_precision(precision)
    return open_model(args, choice.model), choice


def detector_for(args: argparse.Namespace, threads: int = 1) -> Any:
    """``--detector`` built for verification: YuNet with ``--detect-sides``, ``--landmarks``
    and ``threads`` (:data:`mobileface.align.yunet.VERIFY_YUNET`)."""
    from mobileface.align import create_detector
    from mobileface.align.yunet import VERIFY_YUNET

    name = getattr(args, "detector", "yunet")
    if name != "yunet":
        return create_detector(name)
    sides = tuple(getattr(args, "detect_sides", ()) or ())
    landmarks = getattr(args, "landmarks", None) or VERIFY_YUNET["landmarks"]
    options = {**VERIFY_YUNET, "landmarks": landmarks}
    return create_detector("yunet", detect_sides=sides, threads=threads, **options)


def precision_dict(embedder: Any, choice: PrecisionChoice | None) -> dict:
    """What ``--json`` says of the precision: picked for the default model, or the model's own."""
    if choice is not None:
        return choice.to_dict()
    precision = getattr(embedder, "precision", None)
    return {"precision": precision, "model": embedder.name, "source": "model", "reason": "--model"}


def describe_precision(info: dict) -> str:
    """One line: ``int8 (auto: CPU has avx512_vnni; ...)``."""
    what = info.get("precision") or "unknown precision"
    if info.get("source") == "model":
        return f"{what} (as the model file says)"
    return f"{what} ({info['source']}: {info['reason']})"


def run(args: argparse.Namespace) -> int:
    import cv2

    from mobileface.cli._format import print_json
    from mobileface.runtime.verifier import (
        FALLBACK_THRESHOLD,
        FaceVerifier,
        calibrated_fars,
        resolve_threshold,
    )

    start = time.perf_counter()
    cv2.setNumThreads(max(1, args.threads))  # OpenCV's resizing and warps: as many as ONNX's
    embedder, choice = choose_model(args)
    resolve_threshold(embedder, args.threshold, args.far)  # an uncalibrated --far fails fast
    verifier = FaceVerifier(
        embedder,
        detector=detector_for(args, args.threads),
        threshold=args.threshold,
        policy=args.policy,
        far=args.far,
        fallback_threshold=FALLBACK_THRESHOLD,
    )
    load_ms = (time.perf_counter() - start) * 1e3
    if verifier.threshold_source.startswith("fallback"):
        print(
            f"warning: {embedder.name} has no calibrated threshold; deciding at the generic "
            f"{FALLBACK_THRESHOLD} (pass --threshold, or calibrate the model)",
            file=sys.stderr,
        )
    warm_ms = verifier.warm_up()
    result = verifier.verify(args.image_a, args.image_b)
    cold = {"load": round(load_ms, 3), "warm_up": round(warm_ms, 3)}
    fars = calibrated_fars(embedder)
    precision = precision_dict(embedder, choice)
    if args.json:
        print_json(
            {
                "model": embedder.name,
                "precision": precision,
                "detect_sides": list(getattr(verifier.detector, "detect_sides", ())),
                "landmarks": getattr(verifier.detector, "landmark_style", None),
                **result.to_dict(),
                "calibrated_fars": fars,
                "cold_start_ms": cold,
            }
        )
        return 0
    verdict = "same person" if result.same else "different people"
    print(
        f"{verdict}: score {result.score:.4f} {'>=' if result.same else '<'} threshold "
        f"{result.threshold:.4f} ({result.threshold_source})"
    )
    print(f"operating point: {describe_operating_point(result, fars)}")
    t = result.timings
    print(
        f"time: {t['total']:.1f} ms (decode {t['decode']:.1f}, detect {t['detect']:.1f}, "
        f"align {t['align']:.1f}, embed {t['embed']:.1f}), warm"
    )
    print(
        f"cold start: {load_ms + warm_ms:.0f} ms once per process, not in the time above "
        f"(loading the models {load_ms:.0f}, first-run warm-up {warm_ms:.0f})"
    )
    print(f"model: {embedder.name}, {describe_precision(precision)}")
    return 0


def describe_operating_point(result: VerificationResult, fars: list[str]) -> str:
    """One line on what the decision's threshold stands for: FAR, TAR, other choices."""
    point = result.operating_point
    others = f"; calibrated FARs: {', '.join(fars)} (--far)" if fars else ""
    if point is not None:
        if point.tar is None:
            measured = "TAR not recorded (no model card calibration)"
        else:
            on = f" on {point.pairs:,} calibration pairs" if point.pairs else ""
            measured = f"TAR {100 * point.tar:.1f} % (same-person pairs accepted{on})"
        return f"FAR {point.key[4:]} (different-person pairs accepted), {measured}{others}"
    if result.threshold_source == "given":
        return f"threshold given by --threshold: FAR and TAR unknown{others}"
    return "generic fallback threshold: FAR and TAR unknown (calibrate the model)"
