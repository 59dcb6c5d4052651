"""Gallery benchmark: 1:N search latency against gallery size, and /v1/identify throughput.

Part 1 (``search``): synthetic galleries of 128-d embeddings (1k, 100k, 1M by default) in a
real gallery file, searched through :class:`mobileface.gallery.ModelIndex` (the code path of
``identify``: face search + per-person aggregation), exact (NumPy) and approximate (HNSW,
FAISS). Each synthetic person has one enrolled face (a random unit "identity" plus noise);
probes are other noisy views of enrolled identities (genuine: the true person scores about
0.65, like a second photo of an enrolled person) and random unit vectors (impostors: nobody
is close, the hardest case for an approximate index). Reported: build/load time, median and
p95 latency per query on one thread, and, for several search widths (ef), the approximate
index's recall@1 against exact. Two synthetic distributions: isotropic (all 128 directions
equally used: the worst case for graph indexes) and one with a decaying spectrum (fewer
effective dimensions, impostor scores spread like a trained model's).

Part 2 (``http``): a real ``mobileface serve`` on 127.0.0.1 with a synthetic gallery, hit by
concurrent clients sending a real face photo to /v1/identify (detection + embedding + search
per request). Reported: requests per second and latency percentiles.

    .venv/bin/python benchmarks/bench_gallery.py search --sizes 1000 100000 1000000
    .venv/bin/python benchmarks/bench_gallery.py http --clients 8 --seconds 20

Without ``--model``, a random-init MobileFaceNet is exported (needs PyTorch); its speed is
that of a trained one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 128
NOISE = 0.73  # two views of one identity score 1 / (1 + NOISE**2) = 0.65 on average


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(
    n: int, seed: int = 0, noise: float = NOISE, spectrum: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` enrolled embeddings and their identity centres (noise sets the genuine score).

    Identity centres have per-dimension variance proportional to ``i ** -spectrum``: 0 is
    isotropic (every direction used equally: the worst case for graph indexes); 0.75 puts
    more variance in fewer directions, so that two random people score about 0 +- 0.12 as
    with trained face models, rather than 0 +- 0.09.
    """
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, DIM + 1) ** (-spectrum / 2)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    centres = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        c = unit(rng.standard_normal((m, DIM)) * scale)
        centres[start : start + m] = c
        out[start : start + m] = unit(c + noise / np.sqrt(DIM) * rng.standard_normal((m, DIM)))
    return out, centres


def bulk_gallery(path: Path, vectors: np.ndarray, model) -> None:
    """A gallery file holding one person per vector (bulk-inserted in one transaction)."""
    from mobileface.gallery import GalleryStore
    from mobileface.gallery.store import utc_now

    GalleryStore(path).close()  # schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    now = utc_now()
    n = len(vectors)
    db.executemany(
        "INSERT INTO persons (id, name, created_at) VALUES (?, ?, ?)",
        ((i + 1, f"person {i + 1}", now) for i in range(n)),
    )
    db.executemany(
        "INSERT INTO faces (id, person_id, model_name, model_version, dim, embedding, "
        "image_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (i + 1, i + 1, model.name, model.version, DIM, vectors[i].tobytes(), f"{i:064x}", now)
            for i in range(n)
        ),
    )
    db.execute("COMMIT")
    db.close()


def time_queries(index, queries: np.ndarray, k: int = 5) -> tuple[list[float], list[int]]:
    times, top = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = index.search(q, k)
        times.append((time.perf_counter() - t0) * 1e3)
        top.append(hits[0].person_id if hits else -1)
    return times, top


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_search(args: argparse.Namespace) -> list[dict]:
    from threadpoolctl import threadpool_limits

    from mobileface.gallery import GalleryStore, HNSWParams, ModelIndex, ModelKey

    threadpool_limits(1, user_api="blas")  # latency on one thread, as in the service

    model = ModelKey("synthetic", "0" * 16)
    params = HNSWParams(args.connectivity, args.expansion_add)
    rows = []
    for spectrum, n in [(a, n) for a in args.spectrum for n in args.sizes]:
        work = Path(tempfile.mkdtemp(prefix=f"bench-{n}-", dir=args.workdir))
        vectors, centres = synthetic(n, spectrum=spectrum)
        rng = np.random.default_rng(1)
        who = rng.choice(n, size=args.queries, replace=n < args.queries)
        genuine = unit(centres[who] + NOISE / np.sqrt(DIM) * rng.standard_normal((len(who), DIM)))
        scale = (np.arange(1, DIM + 1) ** (-spectrum / 2)).astype(np.float32)
        impostor = unit(rng.standard_normal((args.queries, DIM)) * scale)
        t0 = time.perf_counter()
        bulk_gallery(work / "g.db", vectors, model)
        insert_s = time.perf_counter() - t0
        result = {"size": n, "spectrum": spectrum, "insert_s": round(insert_s, 1)}
        sample = vectors[: min(n, 2000)]
        impostor_scores = (sample @ sample.T)[np.triu_indices(len(sample), 1)]
        result["impostor_score_std"] = round(float(impostor_scores.std()), 3)
        del vectors, sample
        with GalleryStore(work / "g.db") as store:
            exact = ModelIndex(store, model, kind="exact")
            t0 = time.perf_counter()
            exact.sync()
            result["exact_load_s"] = round(time.perf_counter() - t0, 2)
            g_ms, g_exact = time_queries(exact, genuine)
            i_ms, i_exact = time_queries(exact, impostor)
            result["exact_ms_p50"] = round(pct(g_ms + i_ms, 50), 3)
            result["exact_ms_p95"] = round(pct(g_ms + i_ms, 95), 3)
            result["exact_genuine_rank1"] = round(float(np.mean(np.array(g_exact) == who + 1)), 4)
            del exact

            approx = ModelIndex(store, model, kind="approx", hnsw=params, threads=args.threads)
            t0 = time.perf_counter()
            approx.sync()
            result["approx_build_s"] = round(time.perf_counter() - t0, 1)
            approx.save(force=True)
            result["approx_file_mb"] = round(approx.path.stat().st_size / 2**20, 1)
            del approx
            approx = ModelIndex(store, model, kind="approx", hnsw=params)
            t0 = time.perf_counter()
            approx.sync()
            result["approx_load_s"] = round(time.perf_counter() - t0, 2)
            result["approx"] = []
            for ef in args.ef:
                approx.face_index.expansion_search = ef
                g_ms, g_approx = time_queries(approx, genuine)
                i_ms, i_approx = time_queries(approx, impostor)
                result["approx"].append(
                    {
                        "ef": ef,
                        "ms_p50": round(pct(g_ms + i_ms, 50), 3),
                        "ms_p95": round(pct(g_ms + i_ms, 95), 3),
                        "recall1_genuine": round(float(np.mean(np.array(g_approx) == g_exact)), 4),
                        "recall1_impostor": round(float(np.mean(np.array(i_approx) == i_exact)), 4),
                    }
                )
        rows.append(result)
        print(json.dumps(result), flush=True)
        if not args.keep:
            for f in work.iterdir():
                f.unlink()
            work.rmdir()
    return rows


def export_model(path: Path) -> Path:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from mobileface.export import export_onnx
    from mobileface.models import create_model
    from models_helpers import randomize_and_calibrate

    torch.manual_seed(0)
    return export_onnx(randomize_and_calibrate(create_model("mobilefacenet")), path)


def bench_http(args: argparse.Namespace) -> dict:
    import httpx

    from mobileface.gallery.pipeline import model_key_for
    from mobileface.runtime import open_embedder

    work = Path(tempfile.mkdtemp(prefix="bench-http-", dir=args.workdir))
    model = Path(args.model) if args.model else export_model(work / "mobilefacenet.onnx")
    key = model_key_for(model, open_embedder(model))
    vectors, _ = synthetic(args.gallery)
    bulk_gallery(work / "g.db", vectors, key)
    photo = Path(args.photo)
    data = photo.read_bytes()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    command = [
        sys.executable, "-m", "mobileface", "serve", "--db", str(work / "g.db"),
        "--model", str(model), "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    if args.workers:
        command += ["--workers", str(args.workers)]
    server = subprocess.Popen(command, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        files = {"image": (photo.name, data, "image/jpeg")}
        with httpx.Client(base_url=url, timeout=60) as c:
            for _ in range(5):  # warm up
                c.post("/v1/identify", files=files).raise_for_status()
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    r = c.post("/v1/identify", files=files)
                    dt = (time.perf_counter() - t0) * 1e3
                    with lock:
                        if r.status_code == 200:
                            latencies.append(dt)
                        else:
                            errors[0] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "gallery": args.gallery,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": errors[0],
        "rps": round(len(latencies) / elapsed, 1),
        "ms_p50": round(statistics.median(latencies), 1),
        "ms_p95": round(pct(latencies, 95), 1),
        "photo": photo.name,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    search = sub.add_parser("search", help="search latency against gallery size")
    search.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    search.add_argument("--queries", type=int, default=500, help="of each kind (default 500)")
    search.add_argument(
        "--spectrum",
        type=float,
        nargs="+",
        default=[0.0, 0.75],
        help="identity spread: 0 isotropic (worst case), 0.75 closer to trained models",
    )
    search.add_argument("--connectivity", type=int, default=32, help="HNSW M")
    search.add_argument("--expansion-add", type=int, default=128, help="HNSW efConstruction")
    search.add_argument(
        "--ef", type=int, nargs="+", default=[64, 256, 512], help="search widths to measure"
    )
    search.add_argument("--threads", type=int, default=0, help="index build threads (all)")
    search.add_argument("--keep", action="store_true", help="keep the gallery files")
    http = sub.add_parser("http", help="/v1/identify requests per second")
    http.add_argument("--model", help=".onnx model (default: export a random-init one)")
    http.add_argument("--gallery", type=int, default=10_000, help="synthetic persons")
    http.add_argument("--clients", type=int, default=8)
    http.add_argument("--seconds", type=float, default=20)
    http.add_argument("--workers", type=int, default=None, help="server --workers")
    default_photo = (
        Path(os.environ.get("MOBILEFACE_DATA", REPO.parent / "shared" / "data"))
        / "lfw/images/Al_Gore/Al_Gore_0001.jpg"
    )
    http.add_argument("--photo", default=str(default_photo), help="the photo to send")
    for p in (search, http):
        p.add_argument("--workdir", default=None, help="where the temporary galleries go")
        p.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    rows = bench_search(args) if args.part == "search" else bench_http(args)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
