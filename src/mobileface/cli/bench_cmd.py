"""``mobileface bench``: latency, throughput, memory and size of a model; end-to-end verify."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure a model's speed, memory and size (and end-to-end verify time)",
        description=(
            "Latency percentiles (p50/p90/p99), throughput and peak memory of the network "
            "alone through ONNX Runtime, for each --threads and --batch; the file size; and, "
            "with --pair, the end-to-end time of verifying two photos split into decode, "
            "detect, align and embed. M is a bundled weights name, an .onnx file, a training "
            "checkpoint or a zoo name (the last two are exported to a temporary file first, "
            "which needs PyTorch; zoo models get random weights: speed does not depend on "
            "them). Default M: the bundled default weights in the precision picked for this "
            "machine (--precision), else a random mobilefacenet."
        ),
    )
    parser.add_argument("model", metavar="M", nargs="?", help="model to measure")
    parser.add_argument("--threads", type=_int_list, default=[1, 2], help="default 1,2")
    parser.add_argument("--batch", type=_int_list, default=[1, 8, 32], help="default 1,8,32")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--pair", nargs=2, metavar=("A", "B"), help="photos to verify end to end")
    parser.add_argument("--runs", type=int, default=30, help="end-to-end verify runs")
    parser.add_argument("--json", action="store_true", help="print one JSON report on one line")
    from mobileface.cli.verify_cmd import add_speed_arguments

    add_speed_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.cli._format import format_table, print_json
    from mobileface.runtime.bench import bench_model, file_size_mb

    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    with tempfile.TemporaryDirectory(prefix="mobileface-bench-") as tmp:
        path, label, precision = _model_file(args.model, Path(tmp), say, args.precision)
        report: dict = {
            "model": label,
            "file": str(path),
            "size_mb": file_size_mb(path),
            "precision": precision,
        }
        rows, results = [], []
        for threads in args.threads:
            for batch in args.batch:
                try:
                    r = bench_model(
                        path, threads=threads, batch=batch, seconds=args.seconds, label=label
                    )
                except ValueError as exc:  # a file with a fixed batch size
                    say(f"skipped threads={threads} batch={batch}: {exc}")
                    continue
                results.append(r.to_dict())
                rows.append(
                    [
                        threads,
                        batch,
                        r.p50_ms,
                        r.p90_ms,
                        r.p99_ms,
                        round(r.images_per_s, 1),
                        r.peak_rss_mb,
                        r.session_mb,
                    ]
                )
        report["latency"] = results
        if args.pair:
            report["verify"] = _bench_pair(path, args, min(args.threads))
    if args.json:
        print_json(report)
        return 0
    from mobileface.cli.verify_cmd import describe_precision

    print(f"{label}: {report['size_mb']:.2f} MB, {describe_precision(precision)}")
    headers = ["threads", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "peak MB", "+MB"]
    print(format_table(headers, rows))
    if args.pair:
        v, pair = report["verify"]["ms"], report["verify"]
        sides = ",".join(map(str, pair["detect_sides"])) or "off"
        print(
            f"verify (threads={pair['threads']}, median of {args.runs}, both crops in one "
            f"network call, detect sides {sides}): {v['total']:.2f} ms = decode "
            f"{v['decode']:.2f} + detect {v['detect']:.2f} + align {v['align']:.2f} + embed "
            f"{v['embed']:.2f}"
        )
    return 0


def _bench_pair(path: Path, args: argparse.Namespace, threads: int) -> dict:
    import cv2

    from mobileface.cli.verify_cmd import detector_for
    from mobileface.runtime import FaceVerifier, OnnxEmbedder
    from mobileface.runtime.bench import bench_verify

    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        detector = detector_for(args, threads)
        verifier = FaceVerifier(OnnxEmbedder(path, threads=threads), detector=detector)
        out = bench_verify(verifier, args.pair[0], args.pair[1], runs=args.runs)
    finally:
        cv2.setNumThreads(previous)
    out["threads"] = threads
    out["detect_sides"] = list(getattr(detector, "detect_sides", ()))
    return out


def _model_file(
    spec: str | None, tmp: Path, say, precision: str | None = None
) -> tuple[Path, str, dict]:
    """The ONNX file to measure (exporting zoo names and checkpoints to ``tmp``), its label,
    and its precision: as picked for this machine when ``spec`` is ``None``."""
    from mobileface import weights
    from mobileface.errors import ModelFileError, UsageError

    if spec is not None and precision:
        raise UsageError("--precision picks the default weights' precision; not with M")
    picked = None
    if spec is None:
        if weights.default_weights_name() is None:
            spec = "mobilefacenet"
            say("no bundled weights: measuring a random-init mobilefacenet export")
        else:
            from mobileface.runtime.precision import choose_precision

            picked = choose_precision(precision)
            spec = picked.model
    if Path(spec).suffix.lower() == ".onnx" or weights.is_bundled(spec):
        path = weights.resolve_weights(spec)
        if picked is not None:
            return path, spec, picked.to_dict()
        return path, Path(spec).stem, _file_precision(path, Path(spec).stem)
    from mobileface.errors import require_torch

    try:
        require_torch(f"benchmarking {spec!r} (it must be exported first)")
    except ImportError as exc:
        raise ModelFileError(str(exc)) from None
    from mobileface.export.onnx import export_onnx, load_for_export

    model, source, _ = load_for_export(spec)
    out = export_onnx(model, tmp / f"{Path(spec).stem}.onnx", metadata={"source": source})
    return out, Path(spec).stem, _file_precision(out, Path(spec).stem)


def _file_precision(path: Path, label: str) -> dict:
    """The precision a model file's metadata records (``fp32`` when it says none)."""
    from mobileface.runtime.embedder import open_session
    from mobileface.runtime.metadata import decode_metadata

    meta = decode_metadata(open_session(path).get_modelmeta().custom_metadata_map or {})
    precision = str(meta.get("precision", "fp32"))
    return {"precision": precision, "model": label, "source": "model", "reason": "M"}
