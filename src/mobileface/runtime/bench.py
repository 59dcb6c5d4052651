"""Speed and memory of ONNX embedders and of end-to-end verification (torch-free).

Latency is measured on the network alone (a normalised random batch straight into the ONNX
Runtime session), after warm-up, as percentiles over repeated runs; throughput is images per
second at the median. Peak memory is the process's resident high-water mark, reset before
each measurement where Linux allows it (``/proc/self/clear_refs``), so each figure is what
that session needed on top of what was already loaded. End-to-end verification is timed step
by step: decode, detect, align, embed.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .embedder import open_session


@dataclass(frozen=True)
class Latency:
    """One (threads, batch) measurement of a model file."""

    model: str
    threads: int
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    images_per_s: float
    peak_rss_mb: float | None
    session_mb: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss_mb() -> float | None:
    """Current resident memory of this process in MiB (Linux), else ``None``."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the resident high-water mark (Linux >= 4.0); ``False`` where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Resident high-water mark of this process in MiB."""
    value = _status_mb("VmHWM")
    if value is not None:
        return value
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return None


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def time_runs(
    fn: Any, *, warmup: int = 10, min_runs: int = 20, max_runs: int = 300, seconds: float = 2.0
) -> np.ndarray:
    """Call ``fn()`` ``warmup`` times, then until ``max_runs`` or ``seconds`` (at least
    ``min_runs``); returns the run times in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times)


def fixed_batch(session: Any) -> int | None:
    """The batch size a session's input is fixed to, or ``None`` if it is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def bench_model(
    path: str | Path,
    *,
    threads: int = 1,
    batch: int = 1,
    input_size: tuple[int, int] | None = None,
    seconds: float = 2.0,
    max_runs: int = 300,
    label: str | None = None,
) -> Latency:
    """Latency percentiles, throughput and memory of one ONNX embedder at ``threads``/``batch``.

    Raises ``ValueError`` if the file's batch size is fixed to another value.
    """
    reset_peak_rss()
    before = rss_mb()
    session = open_session(path, threads)
    inp = session.get_inputs()[0]
    fixed = fixed_batch(session)
    if fixed is not None and fixed != batch:
        raise ValueError(f"{path}: batch size fixed to {fixed} in the file")
    shape = inp.shape
    if input_size is None:
        if not all(isinstance(d, int) for d in shape[2:]):
            from .embedder import OnnxEmbedder

            input_size = OnnxEmbedder(path).input_size
        else:
            input_size = (shape[2], shape[3])
    h, w = input_size
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, h, w)).astype(np.float32)
    feed = {inp.name: x}
    times = time_runs(lambda: session.run(None, feed), seconds=seconds, max_runs=max_runs)
    peak = peak_rss_mb()
    p50 = float(np.percentile(times, 50))
    return Latency(
        model=label or Path(path).name,
        threads=threads,
        batch=batch,
        runs=len(times),
        p50_ms=p50,
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=float(times.mean()),
        images_per_s=batch * 1e3 / p50,
        peak_rss_mb=peak,
        session_mb=None if peak is None or before is None else max(0.0, peak - before),
    )


def bench_verify(verifier: Any, image_a: Any, image_b: Any, *, runs: int = 30) -> dict[str, Any]:
    """Median time of each verification step (ms, both images together) over ``runs`` runs.

    Images are given as paths or bytes, so decoding is part of the measurement.
    """
    verifier.verify(image_a, image_b)  # warm-up: sessions, detector, caches
    steps: dict[str, list[float]] = {}
    result = None
    for _ in range(runs):
        result = verifier.verify(image_a, image_b)
        for key, value in result.timings.items():
            steps.setdefault(key, []).append(value)
    out = {key: float(np.median(values)) for key, values in steps.items()}
    out["total_p90"] = float(np.percentile(steps["total"], 90))
    return {"ms": out, "runs": runs, "score": result.score if result else None}


def file_size_mb(path: str | Path) -> float:
    return os.path.getsize(path) / (1 << 20)
