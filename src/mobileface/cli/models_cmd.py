"""``mobileface models``: the model zoo's figures, and which bundled weights ``--model`` takes.

Both views are instant and torch-free: the zoo's figures are stored (:mod:`mobileface.zoo`,
checked against the code by the tests) and the bundled weights' figures come from their
model cards (:mod:`mobileface.weights`).
"""

from __future__ import annotations

import argparse
import fnmatch
import textwrap
from typing import Any

from mobileface.cli._format import format_table, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model zoo, and the bundled weights names --model takes",
        description=(
            "List the registered architectures with input size, embedding size, parameters "
            "(before and after batch-norm folding), multiply-adds, fp32 size (measured from "
            "the code once and stored; the tests check the stored figures against the code) "
            "and the bundled weights of each. An architecture is not trained weights: "
            "--model takes a bundled weights name (e.g. the default 'mobilefacenet', whose "
            "architecture is mobilefacenet_relu), an .onnx file or a checkpoint .pt. "
            "--weights lists the bundled weights with their model cards' figures: LFW View 2 "
            "accuracy and the calibrated thresholds verify decides at, with the TAR there."
        ),
    )
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style name filter (with --weights: weights name or architecture)",
    )
    parser.add_argument(
        "--weights",
        action="store_true",
        help="list the bundled weights (the names --model takes) with their cards' figures",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list on one line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.weights:
        return _run_weights(args)
    from mobileface import weights
    from mobileface.zoo import zoo_entries

    entries = zoo_entries(args.pattern)
    by_arch = weights.architectures()
    for entry in entries:
        entry["weights"] = by_arch.get(entry["name"], [])
    if args.json:
        print_json(entries)
        return 0
    headers = ["model", "input", "dim", "params", "params (BN folded)", "MAdds", "fp32 MB"]
    rows = [
        [
            e["name"],
            "x".join(map(str, e["input_size"])),
            e["embedding_size"],
            e["params"],
            e["params_folded"],
            e["madds"],
            e["fp32_mb"],
            ", ".join(e["weights"]) or "-",
        ]
        for e in entries
    ]
    print(format_table([*headers, "bundled weights"], rows))
    bundled = weights.list_weights()
    if bundled:
        default = weights.default_weights_name()
        note = (
            f"--model takes a bundled weights name ({', '.join(bundled)}; default "
            f"{default or 'none'}), an .onnx file or a checkpoint .pt, not an architecture "
            "name."
        )
        print("\n" + _wrap(note) + "\nTheir accuracy and thresholds: mobileface models --weights")
    else:
        print(f"\nno bundled weights: {weights.NO_WEIGHTS_HINT}")
    return 0


def _run_weights(args: argparse.Namespace) -> int:
    from mobileface import weights

    infos = []
    for name in weights.list_weights():
        info = weights.weights_info(name)
        matches = [name, str(info.get("architecture") or "")]
        if not any(fnmatch.fnmatch(m, args.pattern) for m in matches):
            continue
        if info["precision"] is None:
            info["precision"] = _onnx_precision(weights.weights_dir() / f"{name}.onnx")
        infos.append(info)
    if args.json:
        print_json(infos)
        return 0
    if not infos:
        print("no bundled weights match" if weights.list_weights() else weights.NO_WEIGHTS_HINT)
        return 0
    keys = sorted({k for i in infos for k in i["thresholds"]}, key=_far_of, reverse=True)
    headers = ["name", "architecture", "precision", "MB", "LFW View 2"]
    for key in keys:
        headers += [f"threshold FAR {key[4:]}", "TAR there"]
    rows = []
    for info in infos:
        row = [
            info["name"],
            info["architecture"] or "?",
            info["precision"] or "?",
            info["size_mb"] if info["size_mb"] is not None else "?",
            _accuracy(info["lfw_view2"]),
        ]
        for key in keys:
            threshold = info["thresholds"].get(key)
            row += [
                "-" if threshold is None else f"{threshold:.4f}",
                _pct(info["calibration_tar"].get(key)),
            ]
        rows.append(row)
    print(format_table(headers, rows))
    default = weights.default_weights_name()
    pairs = {i["calibration_pairs"] for i in infos if i["calibration_pairs"]}
    on = f" on {', '.join(f'{p:,}' for p in sorted(pairs))} pairs" if pairs else ""
    note = (
        f"Pass the name to --model (default: {default or 'none'}). LFW View 2: accuracy +- std "
        "over its 10 folds, end to end from the photos. Threshold FAR x: the cosine score at "
        f"which the calibration{on} accepted that share of different-person pairs; TAR there: "
        "the share of same-person pairs it accepted. verify decides at FAR 1e-3 unless --far "
        f"or --threshold says otherwise. Model cards: NAME.json in {weights.weights_dir()}"
    )
    print("\n" + _wrap(note))
    return 0


def _onnx_precision(path: Any) -> str | None:
    """The ``mobileface.precision`` metadata of an ONNX file (cards that predate the entry)."""
    try:
        import onnxruntime as ort

        from mobileface.runtime.metadata import decode_metadata

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = decode_metadata(session.get_modelmeta().custom_metadata_map or {})
    except Exception:  # an unreadable file shows as "?", the listing goes on
        return None
    value = meta.get("precision")
    return None if value is None else str(value)


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


def _far_of(key: str) -> float:
    try:
        return float(key[4:])
    except ValueError:
        return 0.0


def _accuracy(lfw: dict | None) -> str:
    if not lfw or lfw.get("accuracy") is None:
        return "-"
    std = lfw.get("accuracy_std")
    spread = f" +- {100 * std:.2f}" if std is not None else ""
    return f"{100 * lfw['accuracy']:.2f}{spread} %"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
