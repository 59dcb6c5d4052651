"""``mobileface export``: a zoo model or training checkpoint to ONNX (fp32, int8) and TFLite."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (fp32 and int8) with metadata and a parity check",
        description=(
            "Export M (a training checkpoint .pt, or a zoo name: random weights, for structure "
            "and speed) to ONNX with batch norm folded, a dynamic batch axis and the model's "
            "input size, normalisation, embedding size and calibrated thresholds in the file's "
            "metadata; then check it against PyTorch (cosine >= 0.9999 or the export fails). "
            "With --int8, also write an int8 file (ONNX Runtime static quantisation, QDQ, "
            "per-channel weights) calibrated on the aligned face crops under --calib."
        ),
    )
    parser.add_argument("model", metavar="M", help="training checkpoint (.pt) or zoo model name")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="fp32 ONNX file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--keep-prelu",
        action="store_true",
        help="keep PRelu ops (for runtimes with a fast native PReLU) instead of the exact "
        "Conv/Relu/Add form that ONNX Runtime runs 3x faster",
    )
    parser.add_argument("--card", help="model card JSON with calibrated thresholds to embed")
    group = parser.add_argument_group("int8")
    group.add_argument("--int8", action="store_true", help="also write an int8 model")
    group.add_argument("--calib", metavar="DIR", help="folder of aligned face crops (recursive)")
    group.add_argument("--int8-out", metavar="PATH", help="default: OUT-int8.onnx")
    group.add_argument(
        "--keep-float",
        default="none",
        help="layers kept in float, comma-separated: first, last, node names, or 'none' "
        "(default: none; measured, first/last in float did not help accuracy)",
    )
    group.add_argument("--calib-images", type=int, default=256, help="calibration sample size")
    group.add_argument(
        "--calib-method", default="minmax", choices=["minmax", "percentile", "entropy"]
    )
    parser.add_argument("--tflite", metavar="OUT.tflite", help="also write TFLite (litert-torch)")
    parser.add_argument("--json", action="store_true", help="print one JSON report on one line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mobileface.cli._format import print_json
    from mobileface.errors import DataFormatError, ModelFileError, require_torch

    require_torch("mobileface export")
    import onnx

    from mobileface.export.graph import graph_report
    from mobileface.export.onnx import (
        FP32_MIN_COSINE,
        export_onnx,
        load_for_export,
        parity_check,
    )
    from mobileface.runtime.bench import bench_model, file_size_mb
    from mobileface.runtime.metadata import metadata_thresholds
    from mobileface.runtime.preprocess import Normalization

    if args.int8 and not args.calib:
        raise DataFormatError("--int8 needs --calib DIR (a folder of aligned face crops)")
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    model, source, thresholds = load_for_export(args.model)
    if args.card:
        card = json.loads(Path(args.card).read_text(encoding="utf-8"))
        thresholds = metadata_thresholds(card) or thresholds
    if source == "random init":
        say(f"{args.model}: random weights (structure and speed only; accuracy is meaningless)")
    out = Path(args.onnx)
    export_onnx(
        model,
        out,
        opset=args.opset,
        prelu="keep" if args.keep_prelu else "decompose",
        thresholds=thresholds or None,
        metadata={"source": source},
    )
    graph = graph_report(onnx.load(str(out)))
    inputs, label = _parity_inputs(args.calib, model.input_size, Normalization())
    parity = parity_check(model, out, inputs)
    report: dict = {
        "onnx": str(out),
        "size_mb": round(file_size_mb(out), 3),
        "architecture": getattr(model, "model_name", None),
        "source": source,
        "thresholds": thresholds,
        "graph": graph,
        "parity": {**parity.to_dict(), "inputs": label},
    }
    say(f"wrote {out} ({report['size_mb']:.2f} MB, opset {graph['opset']})")
    say(f"  ops: {', '.join(f'{k} {v}' for k, v in graph['ops'].items())}")
    say(f"  PRelu ops: {graph['prelu_ops']}; GDConv: " + _gdconv_text(graph["gdconv"]))
    say(f"  parity vs PyTorch: {parity} ({label})")
    if not parity.ok(FP32_MIN_COSINE):
        raise ModelFileError(
            f"{out}: parity check failed: worst cosine {parity.min_cosine:.6f} < "
            f"{FP32_MIN_COSINE} against PyTorch"
        )

    if args.int8:
        report["int8"] = _export_int8(args, model, out, thresholds, source, inputs, say)
        fp32 = bench_model(out, threads=1, batch=1, seconds=1.5)
        int8 = bench_model(report["int8"]["path"], threads=1, batch=1, seconds=1.5)
        report["speed_ms_1thread_batch1"] = {"fp32": fp32.p50_ms, "int8": int8.p50_ms}
        say(
            f"  speed (1 thread, batch 1, p50): fp32 {fp32.p50_ms:.2f} ms, int8 "
            f"{int8.p50_ms:.2f} ms ({fp32.p50_ms / int8.p50_ms:.2f}x)"
        )
    if args.tflite:
        from mobileface.export.tflite import export_tflite, tflite_parity

        path = export_tflite(model, args.tflite)
        tparity = tflite_parity(model, path, inputs)
        report["tflite"] = {"path": str(path), "size_mb": round(file_size_mb(path), 3)}
        report["tflite"]["parity"] = tparity.to_dict()
        say(f"wrote {path} ({file_size_mb(path):.2f} MB); parity vs PyTorch: {tparity}")
    if args.json:
        print_json(report)
    return 0


def _export_int8(args, model, out, thresholds, source, inputs, say) -> dict:
    from mobileface.export.onnx import export_onnx, parity_check
    from mobileface.export.quantize import quantize_onnx
    from mobileface.runtime.bench import file_size_mb

    keep = [] if args.keep_float.strip() in ("", "none") else args.keep_float.split(",")
    int8_path = Path(args.int8_out) if args.int8_out else out.with_name(f"{out.stem}-int8.onnx")
    with tempfile.TemporaryDirectory(prefix="mobileface-export-") as tmp:
        plain = export_onnx(
            model,
            Path(tmp) / "int8-form.onnx",
            opset=max(args.opset, 13),
            prelu="int8",
            thresholds=thresholds or None,
            metadata={"source": source},
        )
        result = quantize_onnx(
            plain,
            int8_path,
            args.calib,
            keep_float=[k.strip() for k in keep if k.strip()],
            method=args.calib_method,
            max_images=args.calib_images,
        )
    parity = parity_check(model, int8_path, inputs)
    size = file_size_mb(int8_path)
    say(
        f"wrote {int8_path} ({size:.2f} MB, int8 QDQ per-channel, {result.calibration_images} "
        f"calibration crops, {args.calib_method}; float: {', '.join(result.float_nodes) or 'none'})"
    )
    say(f"  parity vs PyTorch: {parity}")
    return {
        "path": str(int8_path),
        "size_mb": round(size, 3),
        "quantization": result.to_dict(),
        "parity": parity.to_dict(),
    }


def _parity_inputs(calib: str | None, input_size, normalization):
    """Real crops from the calibration folder when there is one (a sample apart from the
    calibration sample), else ``None`` (random inputs)."""
    if not calib:
        return None, "random inputs"
    from mobileface.export.quantize import find_images, load_crops

    paths = find_images(calib)
    crops, _ = load_crops(paths, input_size, limit=32, seed=12345)
    return normalization(crops), f"face crops from {calib}"


def _gdconv_text(gdconv: list) -> str:
    if not gdconv:
        return "none"
    return "; ".join(
        f"plain depthwise Conv {'x'.join(map(str, g['kernel']))}, {g['channels']} channels"
        for g in gdconv
    )
