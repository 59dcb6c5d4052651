"""Runtime speed, size and int8 accuracy, side by side in one process.

    .venv/bin/python benchmarks/bench_runtime.py            # speed, size, parity, verify
    .venv/bin/python benchmarks/bench_runtime.py --lfw      # + LFW View 2 accuracy fp32 vs int8

Models: our mobilefacenet (random init, BN statistics calibrated: speed does not depend on
the weights) exported as fp32 (PReLU rewritten, the default), fp32 with the PRelu op kept,
and int8 (calibrated on CelebA crops); mobilefacenet_relu and mobilefacenet_prelu_shared
(one PReLU slope per layer) likewise; and the peer
MobileFaceNet (../shared/peers, comparison only) as shipped and through our int8 pipeline.
The peer is the one trained MobileFaceNet available, so int8 accuracy on LFW is measured on
it. Latency: network only, median over rounds that interleave the models (so a busy machine
slows all of them alike); end-to-end verify: two LFW 250x250 photos, one thread, as
``mobileface verify`` runs (benchmarks/bench_verify.py compares it with the path before).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PEER = SHARED / "peers" / "mobilefacenet-peer.onnx"
LFW = SHARED / "data" / "lfw"
CALIB = SHARED / "data" / "celeba-test-112"
PAIR = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")


# The paper's per-channel PReLU, the ReLU ablation, and one PReLU slope per layer.
ARCHS = ("mobilefacenet", "mobilefacenet_relu", "mobilefacenet_prelu_shared")


def build_models(folder: Path, calib_images: int) -> dict[str, Path]:
    from mobileface.export.onnx import calibrate_batchnorm, export_onnx
    from mobileface.export.quantize import quantize_onnx
    from mobileface.models import create_model

    files: dict[str, Path] = {}
    for arch in ARCHS:
        model = calibrate_batchnorm(create_model(arch))
        files[f"{arch} fp32"] = export_onnx(model, folder / f"{arch}.onnx")
        if arch == "mobilefacenet":
            files[f"{arch} fp32 PRelu op"] = export_onnx(
                model, folder / f"{arch}-prelu.onnx", prelu="keep"
            )
        raw = export_onnx(model, folder / f"{arch}-int8-form.onnx", prelu="int8")
        files[f"{arch} int8"] = quantize_onnx(
            raw, folder / f"{arch}-int8.onnx", CALIB, max_images=calib_images
        ).path
    if PEER.is_file():
        files["peer fp32"] = PEER
        files["peer int8 (ours)"] = quantize_onnx(
            PEER, folder / "peer-int8.onnx", CALIB, max_images=calib_images
        ).path
    return files


def interleaved_latency(files: dict[str, Path], rounds: int, seconds: float) -> dict[str, dict]:
    """1 thread, batch 1: p50 of each round, then the median and best round per model."""
    from mobileface.runtime.bench import bench_model

    per: dict[str, list] = {k: [] for k in files}
    for _ in range(rounds):
        for label, path in files.items():
            per[label].append(bench_model(path, threads=1, batch=1, seconds=seconds))
    out = {}
    for label, results in per.items():
        p50 = [r.p50_ms for r in results]
        out[label] = {
            "p50_ms": float(np.median(p50)),
            "best_round_p50_ms": float(min(p50)),
            "p90_ms": float(np.median([r.p90_ms for r in results])),
            "p99_ms": float(np.median([r.p99_ms for r in results])),
        }
    return out


def grid(files: dict[str, Path], threads: list[int], batches: list[int], seconds: float):
    from mobileface.runtime.bench import bench_model

    rows = []
    for label, path in files.items():
        for t in threads:
            for b in batches:
                try:
                    r = bench_model(path, threads=t, batch=b, seconds=seconds, label=label)
                except ValueError:
                    continue  # fixed batch size
                rows.append(r.to_dict())
    return rows


def aligned_crops(paths: list[Path]) -> tuple[np.ndarray, int]:
    from mobileface.align import align_image, center_crop, create_detector
    from mobileface.errors import NoFaceError
    from mobileface.image import load_image

    detector = create_detector("yunet")
    crops, fallbacks = [], 0
    for path in paths:
        image = load_image(path)
        try:
            crops.append(align_image(image, detector, policy="central")[0])
        except NoFaceError:
            crops.append(center_crop(image, (112, 112)))
            fallbacks += 1
    return np.stack(crops), fallbacks


def parity(files: dict[str, Path], crops: np.ndarray) -> dict[str, dict]:
    from mobileface.runtime import OnnxEmbedder, cosine_similarity

    out = {}
    pairs = [(f"{arch} fp32", f"{arch} int8") for arch in ARCHS]
    for fp32, int8 in [*pairs, ("peer fp32", "peer int8 (ours)")]:
        if fp32 in files and int8 in files:
            a = OnnxEmbedder(files[fp32]).embed(crops)
            b = OnnxEmbedder(files[int8]).embed(crops)
            cos = cosine_similarity(a, b)
            out[int8] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    return out


def verify_e2e(files: dict[str, Path], runs: int) -> dict[str, dict]:
    import cv2

    from mobileface.align import create_detector
    from mobileface.align.yunet import DETECT_SIDES
    from mobileface.runtime import FaceVerifier, OnnxEmbedder
    from mobileface.runtime.bench import bench_verify

    cv2.setNumThreads(1)
    a, b = (LFW / "images" / p for p in PAIR)
    out = {}
    for label in ("mobilefacenet fp32", "mobilefacenet int8", "mobilefacenet_relu int8"):
        detector = create_detector("yunet", detect_sides=DETECT_SIDES)  # as `verify` runs
        verifier = FaceVerifier(OnnxEmbedder(files[label], threads=1), detector=detector)
        out[label] = bench_verify(verifier, a, b, runs=runs)["ms"]
    return out


def lfw_accuracy(files: dict[str, Path]) -> dict:
    from mobileface.data.pairs import read_pairs
    from mobileface.evaluation.metrics import kfold_accuracy
    from mobileface.runtime import OnnxEmbedder, l2_normalize

    listed = read_pairs(LFW / "pairs.txt", LFW / "images")
    pairs = [(p.image_a, p.image_b) for p in listed]
    same = np.array([p.same for p in listed])
    folds = np.array([p.fold for p in listed])
    unique = sorted({p for pair in pairs for p in pair})
    index = {p: i for i, p in enumerate(unique)}
    t0 = time.perf_counter()
    crops, fallbacks = aligned_crops(unique)
    out = {"images": len(unique), "centre_crop_fallbacks": fallbacks, "pairs": len(pairs)}
    out["align_s"] = time.perf_counter() - t0
    a = np.array([index[x] for x, _ in pairs])
    b = np.array([index[y] for _, y in pairs])
    for label in ("peer fp32", "peer int8 (ours)"):
        emb = l2_normalize(OnnxEmbedder(files[label], threads=2).embed(crops))
        scores = np.sum(emb[a] * emb[b], axis=1)
        result = kfold_accuracy(scores, same, folds)
        out[label] = {"accuracy": result.mean * 100, "std": result.std * 100}
    out["int8_change_points"] = out["peer int8 (ours)"]["accuracy"] - out["peer fp32"]["accuracy"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--lfw", action="store_true", help="LFW View 2 accuracy, fp32 vs int8")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args()

    from mobileface.runtime.bench import file_size_mb

    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        t0 = time.perf_counter()
        files = build_models(Path(tmp), args.calib_images)
        print(f"built {len(files)} models in {time.perf_counter() - t0:.0f} s", flush=True)
        report["size_mb"] = {k: round(file_size_mb(p), 3) for k, p in files.items()}
        report["latency_1thread_batch1"] = lat = interleaved_latency(
            files, args.rounds, args.seconds
        )
        print("\n== 1 thread, batch 1 (median over interleaved rounds) ==")
        print(f"{'model':32s} {'p50 ms':>8s} {'best':>7s} {'p90':>7s} {'p99':>7s} {'MB':>6s}")
        for label, r in lat.items():
            print(
                f"{label:32s} {r['p50_ms']:8.2f} {r['best_round_p50_ms']:7.2f} "
                f"{r['p90_ms']:7.2f} {r['p99_ms']:7.2f} {report['size_mb'][label]:6.2f}"
            )
        ours = lat["mobilefacenet fp32"]["p50_ms"]
        if "peer fp32" in lat:
            for arch in ARCHS:
                ratio = lat[f"{arch} fp32"]["p50_ms"] / lat["peer fp32"]["p50_ms"]
                print(f"{arch} fp32 / peer fp32: {ratio:.2f}")
        for arch in ARCHS:
            speedup = lat[f"{arch} fp32"]["p50_ms"] / lat[f"{arch} int8"]["p50_ms"]
            print(f"{arch}: int8 is {speedup:.2f}x faster than its fp32")
        print(
            "mobilefacenet int8 vs our fp32 (PReLU) : "
            f"{ours / lat['mobilefacenet int8']['p50_ms']:.2f}x; mobilefacenet_relu int8 vs our "
            f"fp32: {ours / lat['mobilefacenet_relu int8']['p50_ms']:.2f}x"
        )

        main_files = {k: files[k] for k in ("mobilefacenet fp32", "mobilefacenet int8")}
        report["grid"] = grid(main_files, [1, 2], [1, 8, 32], args.seconds)
        print("\n== threads x batch (ours) ==")
        print(f"{'model':22s} thr batch  p50 ms  p90 ms  p99 ms   img/s  peak MB")
        for r in report["grid"]:
            print(
                f"{r['model']:22s} {r['threads']:3d} {r['batch']:5d} {r['p50_ms']:7.2f} "
                f"{r['p90_ms']:7.2f} {r['p99_ms']:7.2f} {r['images_per_s']:7.1f} "
                f"{r['peak_rss_mb']:8.1f}"
            )

        lfw_sample = sorted((LFW / "images").glob("*/*_0001.jpg"))[:200]
        crops, _ = aligned_crops(lfw_sample)
        report["int8_parity_on_lfw_crops"] = par = parity(files, crops)
        print(f"\n== int8 vs fp32 embeddings, {len(crops)} aligned LFW faces ==")
        for label, r in par.items():
            print(f"{label:32s} cosine min {r['min_cosine']:.4f} mean {r['mean_cosine']:.4f}")

        report["verify_e2e_1thread_ms"] = e2e = verify_e2e(files, runs=40)
        print("\n== verify two LFW 250x250 photos, 1 thread (median ms) ==")
        for label, t in e2e.items():
            print(
                f"{label:32s} total {t['total']:6.2f} = decode {t['decode']:.2f} + detect "
                f"{t['detect']:.2f} + align {t['align']:.2f} + embed {t['embed']:.2f}"
            )
        if args.lfw and "peer fp32" in files:
            report["lfw"] = lfw = lfw_accuracy(files)
            print(f"\n== LFW View 2 (10 folds, {lfw['pairs']} pairs), peer model ==")
            for label in ("peer fp32", "peer int8 (ours)"):
                print(f"{label:32s} {lfw[label]['accuracy']:.2f} +- {lfw[label]['std']:.2f} %")
            print(f"int8 change: {lfw['int8_change_points']:+.2f} points")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
