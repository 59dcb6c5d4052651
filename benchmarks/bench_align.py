"""Alignment benchmark: accuracy of the crops, ``mobileface align`` throughput, detector latency.

Every part compares alignment settings in the same run (``--modes``):

- ``before``: the defaults before issue 18 (YuNet's own landmarks averaged over 6 views: the
  photo and its mirror at scales 1, 0.8 and 1.25; ``--policy largest``);
- ``default``: ``mobileface align``'s defaults now (one YuNet view, then MTCNN's ONet
  measuring the 5 points on its box; ``--policy prominent``);
- ``fast``: ``mobileface align --fast`` (one YuNet view, its own points; ``prominent``).

Part 1 (``--lfw``): LFW View 2 (6,000 pairs, 10 folds) through each mode: ``mobileface align``
of its 7,701 photos into a fresh folder (images per second of wall time, the whole run timed,
``--lfw-workers`` processes), then the peer MobileFaceNet (``../shared/peers``, comparison only)
and the bundled default weights (fp32) on the crops with flip, as ``mobileface eval --aligned
--flip`` runs them: 10-fold accuracy, AUC, EER, TAR at FAR 1e-3, and the images lost (no crop:
their pairs count as wrong).

Part 2: throughput on the first ``--limit`` LFW photos with each of ``--workers``.

Part 3: latency per call of ``detect`` on an RGB array at 250x250 (an LFW photo) and 1280x720
(the same face placed in an HD frame), after warm-up: median and p90 over ``--repeats``
calls, one thread, for each mode's detector, and for YuNet with OpenCV's DNN backend; and the
ONet pass alone (one face), with and without the mirror.

Part 4: what ONet's pass costs ``mobileface verify``: CPU time per verification of two LFW
photos with the default weights, its detector with and without ONet, interleaved with one peer
embedding (the verify budget is counted in peer embeddings).

    .venv/bin/python benchmarks/bench_align.py --lfw --limit 400 --json out.json
    .venv/bin/python benchmarks/bench_align.py --skip-throughput   # parts 3 and 4 only

The machine's load average is printed: on a shared machine wall-clock figures scale with it,
so CPU time (per image, per call) is printed beside them. The data set is found through
``MOBILEFACE_DATA`` (default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIX_VIEWS = {"flip_average": True, "extra_scales": (0.8, 1.25)}
MODES: dict[str, dict] = {
    "before": {"policy": "largest", "detector_kwargs": {"landmarks": "yunet", **SIX_VIEWS}},
    "default": {},
    "fast": {"precise": False},
}
"""``align_directory`` arguments of each mode (see the module docstring)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("MOBILEFACE_DATA", "../shared/data"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--lfw", action="store_true", help="part 1: View 2 accuracy per mode")
    parser.add_argument("--lfw-workers", type=int, default=2)
    parser.add_argument("--peer", default=None, help="default: ../shared/peers beside the data")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=400, help="photos for part 2 (0: all)")
    parser.add_argument("--repeats", type=int, default=200, help="timed detect calls per size")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    import cv2

    data = Path(args.data)
    lfw = data / "lfw" / "images"
    if not lfw.is_dir():
        print(f"LFW images not found at {lfw} (set MOBILEFACE_DATA)", file=sys.stderr)
        return 1
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "opencv": cv2.__version__,
        "load_average_at_start": os.getloadavg()[0],
        "modes": {m: _describe(m) for m in args.modes},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-align-"))
    try:
        if args.lfw:
            peer = Path(args.peer) if args.peer else data.parent / "peers/mobilefacenet-peer.onnx"
            results["lfw_view2"] = _lfw_part(data / "lfw", peer, tmp, args)
        if not args.skip_throughput:
            src = _link_tree(sorted(lfw.rglob("*.jpg"))[: args.limit or None], lfw, tmp / "src")
            results["throughput"] = [
                _throughput(src, tmp / f"out-{mode}-{w}", w, mode)
                for mode in args.modes
                for w in args.workers
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["detector_latency_ms"] = _latency_part(lfw, args)
    results["verify_cpu_ms"] = _verify_part(lfw, data.parent / "peers/mobilefacenet-peer.onnx")
    results["load_average_at_end"] = os.getloadavg()[0]
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _describe(mode: str) -> dict:
    """The detector options and policy a mode aligns with, as ``mobileface align`` records them."""
    from mobileface.align.batch import AlignOptions, resolve_detector_kwargs

    spec = MODES[mode]
    kwargs = resolve_detector_kwargs(
        "yunet", spec.get("detector_kwargs"), precise=spec.get("precise", True)
    )
    options = AlignOptions(detector_kwargs=kwargs, **_policy(spec))
    settings = options.settings()
    return {"detector_options": settings["detector_options"], "policy": settings["policy"]}


def _policy(spec: dict) -> dict:
    return {"policy": spec["policy"]} if "policy" in spec else {}


def _link_tree(paths: list[Path], root: Path, dst: Path) -> Path:
    for path in paths:
        target = dst / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(path.resolve(), target)
    return dst


def _lfw_part(lfw: Path, peer_path: Path, tmp: Path, args: argparse.Namespace) -> list[dict]:
    """Align View 2's photos in each mode, then the peer's 10-fold figures on the crops."""
    from mobileface.data.pairs import read_pairs
    from mobileface.runtime.embedder import OnnxEmbedder

    if not peer_path.is_file():
        raise SystemExit(f"peer model not found at {peer_path} (pass --peer)")
    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    photos = sorted({p.image_a for p in pairs} | {p.image_b for p in pairs})
    src = _link_tree(photos, lfw / "images", tmp / "view2")
    from mobileface import weights

    models = {
        "peer": OnnxEmbedder(peer_path, threads=1),
        "default weights": OnnxEmbedder(weights.resolve_weights(weights.default_weights_name())),
    }
    out = []
    for mode in args.modes:
        dst = tmp / f"view2-{mode}"
        row = _throughput(src, dst, args.lfw_workers, mode)
        for name, embedder in models.items():
            row[name] = _figures(embedder, lfw / "pairs.txt", dst)
        out.append(row)
        shutil.rmtree(dst, ignore_errors=True)
    return out


def _figures(embedder, pairs_file: Path, crops: Path) -> dict:
    """``mobileface eval --aligned --flip`` on ``crops``: missing crops make pairs wrong."""
    from mobileface.data.pairs import read_pairs
    from mobileface.evaluation.pipeline import EmbedOptions, model_cache_key
    from mobileface.evaluation.verification import evaluate_verification, pairs_from_list

    pairs = read_pairs(pairs_file, crops, missing="keep")
    pair_set = pairs_from_list(pairs, crops, name="LFW View 2")
    run = evaluate_verification(
        pair_set,
        embedder,
        EmbedOptions(aligned=True, flip=True),
        model_key=model_cache_key(embedder, embedder.path, str(embedder.path)),
        progress=False,
    )
    m = run.metrics
    tar = {t.far: t.tar for t in m.tar_at_far}
    return {
        "accuracy": round(100 * m.accuracy, 2),
        "accuracy_std": round(100 * m.accuracy_std, 2),
        "auc": round(m.auc, 5),
        "eer": round(100 * m.eer, 2),
        "tar_at_far_1e-3": None if tar.get(1e-3) is None else round(100 * tar[1e-3], 2),
        "unscorable_pairs": run.unscorable_pairs,
    }


def _throughput(src: Path, dst: Path, workers: int, mode: str) -> dict:
    from mobileface.align.batch import align_directory

    spec = MODES[mode]
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    report = align_directory(
        src,
        dst,
        workers=workers,
        precise=spec.get("precise", True),
        detector_kwargs=spec.get("detector_kwargs"),
        progress=False,
        **_policy(spec),
    )
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    return {
        "mode": mode,
        "workers": workers,
        "images": report.total,
        "lost": report.failed,
        "lost_percent": round(100 * report.lost_fraction, 3),
        "seconds": round(seconds, 2),
        "images_per_second": round(report.total / seconds, 1),
        "cpu_ms_per_image": round(1000 * cpu / max(1, report.total), 2),
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _latency_part(lfw: Path, args: argparse.Namespace) -> list[dict]:
    import cv2

    from mobileface.align import create_detector
    from mobileface.align.batch import resolve_detector_kwargs
    from mobileface.align.onet import OnetRefiner
    from mobileface.image import load_image

    photo = load_image(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    hd = np.full((720, 1280, 3), 110, np.uint8)
    hd[235:485, 515:765] = photo
    cv2.setNumThreads(1)
    rows = []
    opencv = create_detector("yunet", backend="opencv", landmarks="yunet")
    detectors = [("opencv backend, 1 view", opencv)]
    for mode in args.modes:
        spec = MODES[mode]
        kwargs = resolve_detector_kwargs(
            "yunet", spec.get("detector_kwargs"), precise=spec.get("precise", True)
        )
        detectors.append((mode, create_detector("yunet", **kwargs)))
    for label, detector in detectors:
        for size, image in (("250x250", photo), ("1280x720", hd)):
            call = detector.detect
            rows.append({"detector": label, "size": size, **_latency(call, image, args.repeats)})
    face = create_detector("yunet", landmarks="yunet").detect(photo)[:1]
    for flip in (True, False):
        onet = OnetRefiner(flip=flip)
        rows.append(
            {
                "detector": f"ONet pass, one face{', and mirror' if flip else ''}",
                "size": "250x250",
                **_latency(lambda image, r=onet: r.refine(image, face), photo, args.repeats),
            }
        )
    return rows


def _verify_part(lfw: Path, peer_path: Path, rounds: int = 15, runs: int = 20) -> dict:
    """What ONet's pass costs ``mobileface verify``: CPU time per pair of two LFW photos with
    the default weights (the precision picked here) and verify's detector with and without
    ONet, interleaved round by round with one peer embedding (CPU time: steadier than wall
    time on a shared machine); medians of each round's median."""
    from mobileface import weights
    from mobileface.align import align_image, create_detector
    from mobileface.align.yunet import DETECT_SIDES, VERIFY_YUNET
    from mobileface.image import load_image
    from mobileface.runtime import FaceVerifier, OnnxEmbedder
    from mobileface.runtime.precision import choose_precision

    a, b = (lfw / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2))
    choice = choose_precision()
    embedder = OnnxEmbedder(weights.resolve_weights(choice.model), threads=1)
    calls = {}
    for label, landmarks in (("ONet", "onet"), ("YuNet points", "yunet")):
        options = {**VERIFY_YUNET, "landmarks": landmarks, "detect_sides": DETECT_SIDES}
        verifier = FaceVerifier(embedder, create_detector("yunet", **options))
        calls[label] = lambda v=verifier: v.verify(a, b)
    peer = OnnxEmbedder(peer_path, threads=1)
    crop = align_image(load_image(a), create_detector("yunet"))[0]
    calls["peer embedding"] = lambda: peer.embed([crop])
    per: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            per[label].append(_latency(lambda _image, c=call: c(), crop, runs)["cpu_median"])
    out = {k: round(statistics.median(v), 3) for k, v in per.items()}
    out["precision"] = choice.precision
    return out


def _latency(call, image: np.ndarray, repeats: int) -> dict:
    for _ in range(10):
        found = call(image)
    times, cpu_times = [], []
    for _ in range(repeats):
        cpu = time.process_time()
        start = time.perf_counter()
        call(image)
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((time.process_time() - cpu) * 1000)
    times.sort()
    return {
        "median": round(statistics.median(times), 3),
        "p90": round(times[int(0.9 * (len(times) - 1))], 3),
        "cpu_median": round(statistics.median(cpu_times), 3),
        "repeats": repeats,
        "faces": len(found) if isinstance(found, list) else None,
    }


def _print(results: dict) -> None:
    print(f"machine: {results['machine']}; OpenCV {results['opencv']}")
    print(
        f"load average: {results['load_average_at_start']:.2f} at start, "
        f"{results['load_average_at_end']:.2f} at end"
    )
    for mode, how in results["modes"].items():
        print(f"mode {mode}: policy {how['policy']}, detector {how['detector_options']}")
    for row in results.get("lfw_view2", []):
        print(
            f"LFW View 2, {row['mode']:>7}: {row['lost']} of {row['images']:,} images lost "
            f"({row['lost_percent']} %); align {row['images_per_second']:.1f} images/s, "
            f"{row['workers']} worker(s), {row['cpu_ms_per_image']:.1f} ms CPU/image"
        )
        for name in ("peer", "default weights"):
            m = row[name]
            print(
                f"    {name:>15}: {m['accuracy']:.2f} +- {m['accuracy_std']:.2f} %, AUC "
                f"{m['auc']:.5f}, EER {m['eer']:.2f} %, TAR@FAR1e-3 {m['tar_at_far_1e-3']} %"
            )
    for row in results.get("throughput", []):
        print(
            f"align {row['images']:,} LFW photos, {row['mode']:>7}, {row['workers']} worker(s): "
            f"{row['images_per_second']:.1f} images/s ({row['seconds']:.1f} s, "
            f"{row['lost']} lost; {row['cpu_ms_per_image']:.1f} ms CPU per image)"
        )
    v = results["verify_cpu_ms"]
    peer = v["peer embedding"]
    print(
        f"verify, two 250x250 LFW photos, {v['precision']}, CPU time per pair (one peer "
        f"embedding: {peer:.2f} ms):"
    )
    for label in ("YuNet points", "ONet"):
        print(f"    {label:>12}: {v[label]:.2f} ms = {v[label] / peer:.2f}x the peer embedding")
    for row in results["detector_latency_ms"]:
        print(
            f"{row['detector']:>29} {row['size']:>9}, 1 thread: median {row['median']:.2f} ms, "
            f"p90 {row['p90']:.2f} ms, median CPU {row['cpu_median']:.2f} ms "
            f"({row['faces']} face(s))"
        )


if __name__ == "__main__":
    sys.exit(main())
