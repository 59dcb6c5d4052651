"""Alignment benchmark: ``mobileface align`` throughput on LFW, and detector latency.

Part 1: the directory aligner (decode, detect, align, write PNG) over LFW's images with 1 and
2 worker processes, into fresh temporary folders; reported as images per second of wall time
(worker start-up included, the whole run timed), for ``mobileface align``'s default precise
landmarks (6 views) and for ``--fast`` (one view).

Part 2: YuNet latency per call of ``detect`` on an RGB array at 250x250 (an LFW photo) and
1280x720 (the same face placed in an HD frame), after warm-up: median and p90 over repeated
calls, for one view with each backend (OpenCV's DNN module, with its default thread count and
with one thread, beside ONNX Runtime on one thread, the default) and for the precise 6 views.

    .venv/bin/python benchmarks/bench_align.py                   # all of LFW, 1 and 2 workers
    .venv/bin/python benchmarks/bench_align.py --limit 3000 --repeats 200 --json out.json

The machine's load average is printed: on a shared machine wall-clock figures scale with it,
so CPU time (per image, per call) is printed beside them.

The data set is found through ``MOBILEFACE_DATA`` (default ``../shared/data``).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("MOBILEFACE_DATA", "../shared/data"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=0, help="align only the first N images")
    parser.add_argument("--repeats", type=int, default=200, help="timed detect calls per size")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    import cv2

    from mobileface.align import create_detector
    from mobileface.image import load_image

    lfw = Path(args.data) / "lfw" / "images"
    if not lfw.is_dir():
        print(f"LFW images not found at {lfw} (set MOBILEFACE_DATA)", file=sys.stderr)
        return 1
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "load_average_at_start": os.getloadavg()[0],
    }

    if not args.skip_throughput:
        src = lfw
        tmp = Path(tempfile.mkdtemp(prefix="bench-align-"))
        try:
            if args.limit:
                src = tmp / "src"
                for path in sorted(lfw.rglob("*.jpg"))[: args.limit]:
                    target = src / path.relative_to(lfw)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(path.resolve(), target)
            results["throughput"] = [
                _throughput(src, tmp / f"out{w}{mode}", w, precise=mode == "precise")
                for mode in ("precise", "fast")
                for w in args.workers
            ]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    from mobileface.align import PRECISE_YUNET

    opencv = create_detector("yunet", backend="opencv")
    fast, precise = create_detector("yunet"), create_detector("yunet", **PRECISE_YUNET)
    photo = load_image(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    hd = np.full((720, 1280, 3), 110, np.uint8)
    hd[235:485, 515:765] = photo
    latency = []
    default_threads = cv2.getNumThreads()
    for views, detector, threads in (
        (1, opencv, default_threads),
        (1, opencv, 1),
        (1, fast, 1),
        (6, precise, 1),
    ):
        cv2.setNumThreads(threads)
        for label, image in (("250x250", photo), ("1280x720", hd)):
            row = {"size": label, "views": views, "threads": threads, "backend": detector.backend}
            latency.append({**row, **_latency(detector, image, args)})
    cv2.setNumThreads(default_threads)
    results["detector_latency_ms"] = latency

    print(f"machine: {results['machine']}; OpenCV {results['opencv']}")
    print(f"load average at start: {results['load_average_at_start']:.2f}")
    for row in results.get("throughput", []):
        print(
            f"align {row['images']:,} LFW images, {row['mode']:>7}, {row['workers']} worker(s): "
            f"{row['images_per_second']:.1f} images/s ({row['seconds']:.1f} s, "
            f"{row['failed']} failed; {row['cpu_ms_per_image']:.1f} ms CPU per image)"
        )
    for row in latency:
        print(
            f"YuNet ({row['backend']:>11}) {row['size']:>9}, {row['views']} view(s), "
            f"{row['threads']} thread(s): "
            f"median {row['median']:.2f} ms, p90 {row['p90']:.2f} ms, median CPU "
            f"{row['cpu_median']:.2f} ms ({row['faces']} face(s))"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _throughput(src: Path, dst: Path, workers: int, precise: bool) -> dict:
    from mobileface.align.batch import align_directory

    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    report = align_directory(src, dst, workers=workers, precise=precise, progress=False)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    return {
        "cpu_ms_per_image": round(1000 * cpu / max(1, report.total), 2),
        "mode": "precise" if precise else "fast",
        "workers": workers,
        "images": report.total,
        "failed": report.failed,
        "seconds": round(seconds, 2),
        "images_per_second": round(report.total / seconds, 1),
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _latency(detector, image: np.ndarray, args: argparse.Namespace) -> dict:
    for _ in range(10):
        faces = detector.detect(image)
    times, cpu_times = [], []
    for _ in range(args.repeats):
        cpu = time.process_time()
        start = time.perf_counter()
        detector.detect(image)
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((time.process_time() - cpu) * 1000)
    times.sort()
    return {
        "cpu_median": round(statistics.median(cpu_times), 3),
        "median": round(statistics.median(times), 3),
        "p90": round(times[int(0.9 * (len(times) - 1))], 3),
        "repeats": args.repeats,
        "faces": len(faces),
    }


if __name__ == "__main__":
    sys.exit(main())
