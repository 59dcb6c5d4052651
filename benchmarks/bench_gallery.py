"""Gallery benchmark: 1:N search latency against gallery size, /v1/identify throughput, and
the PostgreSQL backend under faults.

Part 1 (``search``): synthetic galleries of 128-d embeddings (1k, 100k, 1M by default) in a
real gallery file, searched through :class:`mobileface.gallery.ModelIndex` (the code path of
``identify``: face search + per-person aggregation), exact (NumPy) and approximate (HNSW,
FAISS); with ``--pg``, the same gallery also copied into PostgreSQL (``persons copy``'s code)
and searched there with pgvector's HNSW index (``DatabaseIndex``), in the same run, against
the same exact answers. Each synthetic person has one enrolled face (a random unit "identity"
plus noise); probes are other noisy views of enrolled identities (genuine: the true person
scores about 0.65, like a second photo of an enrolled person) and random unit vectors
(impostors: nobody is close, the hardest case for an approximate index). Reported: build/load
time, median and p95 latency per query on one thread, and, for several search widths (ef), the
approximate index's recall@1 against exact. Two synthetic distributions: isotropic (all 128
directions equally used: the worst case for graph indexes) and one with a decaying spectrum
(fewer effective dimensions, impostor scores spread like a trained model's).

Part 2 (``http``): real ``mobileface serve`` processes on 127.0.0.1 with a synthetic gallery
(SQLite, or with ``--db postgres`` one PostgreSQL database that they share), hit by concurrent
clients spread over them, sending a real face photo to /v1/identify (detection + embedding +
search per request). Reported: requests per second and latency percentiles, for each count of
server processes in ``--servers``.

Part 3 (``faults``): two servers on one PostgreSQL database. 8 clients spread over both enrol a
person through one and identify them through the other at once; then streams of enrolments
while one server is SIGKILLed, and while PostgreSQL itself restarts (``pg_ctl restart -m
fast``). Reported: requests, errors, 503s, recovery time, and acknowledged enrolments lost.

``--pg auto`` (the default where PostgreSQL is wanted) runs a throwaway cluster through
``scripts/postgres.sh``; ``--pg URL`` uses a database of yours (it must be empty).

    .venv/bin/python benchmarks/bench_gallery.py search --sizes 1000 100000 1000000 --pg auto
    .venv/bin/python benchmarks/bench_gallery.py http --clients 8 --seconds 20 --servers 1 2 \
        --db postgres
    .venv/bin/python benchmarks/bench_gallery.py faults

Without ``--model``, a random-init MobileFaceNet is exported (needs PyTorch); its speed is
that of a trained one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sqlite3
import statistics
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


def time_queries(
    index, queries: np.ndarray, k: int = 5, cpu: list[float] | None = None
) -> tuple[list[float], list[int]]:
    """Each query's wall-clock milliseconds and top person; with ``cpu``, also the
    milliseconds this thread spent on the CPU for it (appended there): the latency it would
    have with a core to itself, which on a busy machine the wall clock is not."""
    times, top = [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        hits = index.search(q, k)
        times.append((time.perf_counter() - t0) * 1e3)
        if cpu is not None:
            cpu.append((time.thread_time() - c0) * 1e3)
        top.append(hits[0].person_id if hits else -1)
    return times, top


def faiss_distances() -> int:
    """Distance computations FAISS's HNSW searches have made since the last call: a cost
    that, unlike milliseconds, does not depend on what else the machine is running."""
    import faiss

    count = int(faiss.cvar.hnsw_stats.ndis)
    faiss.cvar.hnsw_stats.reset()
    return count


def progress(text: str) -> None:
    """A timestamped line on stderr, with the load average (latencies depend on it)."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"[{time.strftime('%H:%M:%S')} load {load}] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class Postgres:
    """Fresh PostgreSQL databases: from a throwaway cluster (``auto``, started on first use,
    removed by :meth:`close`) or the server of a URL of yours."""

    def __init__(self, spec: str, settings: str = "") -> None:
        self.spec, self.settings, self.cluster = spec, settings, None

    def database(self) -> str:
        if self.spec != "auto":
            return self.spec
        if self.cluster is None:
            sys.path.insert(0, str(REPO / "tests"))
            from postgres_helpers import Cluster, missing

            reason = missing()
            if reason:
                raise SystemExit(f"bench_gallery: no PostgreSQL: {reason}")
            self.cluster = Cluster(self.settings).start()
        return self.cluster.create_database()

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.remove()


def bench_search(args: argparse.Namespace) -> list[dict]:
    from threadpoolctl import threadpool_limits

    from mobileface.gallery import GalleryStore, HNSWParams, ModelKey
    from mobileface.gallery.postgres import DEFAULT_HNSW

    threadpool_limits(1, user_api="blas")  # latency on one thread, as in the service
    logging.basicConfig(format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mobileface.gallery.index").setLevel(logging.DEBUG)  # build progress

    model = ModelKey("synthetic", "0" * 16)
    params = HNSWParams(args.connectivity, args.expansion_add, rerank=args.rerank)
    pg_params = HNSWParams(
        args.pg_connectivity or DEFAULT_HNSW.connectivity,
        args.pg_expansion_add or DEFAULT_HNSW.expansion_add,
        DEFAULT_HNSW.expansion_search,
    )
    # Room to build HNSW graphs in memory (pgvector falls back to slow on-disk building: a
    # 1M-face graph with m 32 takes about 1.5 GB).
    settings = f"maintenance_work_mem={args.pg_memory} shared_buffers=2GB"
    postgres = Postgres(args.pg, settings) if args.pg else None
    runs = [(a, n) for a in args.spectrum for n in args.sizes]
    if args.reuse and len(runs) != 1:
        raise SystemExit("bench_gallery: --reuse takes one size and one spectrum")
    rows = []
    for spectrum, n in runs:
        work = Path(args.reuse or tempfile.mkdtemp(prefix=f"bench-{n}-", dir=args.workdir))
        progress(f"{n} faces, spectrum {spectrum}: generating")
        vectors, centres = synthetic(n, spectrum=spectrum)
        genuine, impostor, who = probes(centres, spectrum, args.queries)
        result: dict = {"size": n, "spectrum": spectrum, "faiss_graph": params.__dict__}
        if postgres is not None:
            result["pgvector_graph"] = pg_params.__dict__
        if args.reuse:
            result["reused"] = str(work)
        else:
            progress("writing the gallery file")
            t0 = time.perf_counter()
            bulk_gallery(work / "g.db", vectors, model)
            result["insert_s"] = round(time.perf_counter() - t0, 1)
        sample = vectors[: min(n, 2000)]
        impostor_scores = (sample @ sample.T)[np.triu_indices(len(sample), 1)]
        result["impostor_score_std"] = round(float(impostor_scores.std()), 3)
        del vectors, centres, sample
        with GalleryStore(work / "g.db", create=False) as store:
            if store.count_faces(model) != n:
                raise SystemExit(f"bench_gallery: {work / 'g.db'} does not hold {n} faces")
            g_exact, i_exact = bench_exact(store, model, genuine, impostor, who, result)
            bench_faiss(store, model, params, args, (genuine, g_exact), (impostor, i_exact), result)
            if postgres is not None:
                progress("copying into PostgreSQL, then building pgvector's HNSW index")
                progress(f"so far: {json.dumps(result)}")
                result["pgvector"] = bench_pgvector(
                    store, postgres.database(), model, pg_params, args, (genuine, g_exact),
                    (impostor, i_exact), result,
                )  # fmt: skip
        rows.append(result)
        print(json.dumps(result), flush=True)
        if not (args.keep or args.reuse):
            for f in work.iterdir():
                f.unlink()
            work.rmdir()
    if postgres is not None:
        postgres.close()
    return rows


def probes(
    centres: np.ndarray, spectrum: float, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` genuine probes (new noisy views of enrolled identities), ``count`` impostor
    probes (random, spread like the identities), and the enrolled index of each genuine."""
    n = len(centres)
    rng = np.random.default_rng(1)
    who = rng.choice(n, size=count, replace=n < count)
    genuine = unit(centres[who] + NOISE / np.sqrt(DIM) * rng.standard_normal((len(who), DIM)))
    scale = (np.arange(1, DIM + 1) ** (-spectrum / 2)).astype(np.float32)
    impostor = unit(rng.standard_normal((count, DIM)) * scale)
    return genuine, impostor, who


def bench_exact(
    store, model, genuine: np.ndarray, impostor: np.ndarray, who: np.ndarray, result: dict
) -> tuple[list[int], list[int]]:
    """Exact search of every probe: its latency, and the answers approximate ones must give."""
    from mobileface.gallery import ModelIndex

    progress(f"exact search of {len(genuine) + len(impostor)} probes")
    exact = ModelIndex(store, model, kind="exact")
    t0 = time.perf_counter()
    exact.sync()
    result["exact_load_s"] = round(time.perf_counter() - t0, 2)
    cpu: list[float] = []
    g_ms, g_exact = time_queries(exact, genuine, cpu=cpu)
    i_ms, i_exact = time_queries(exact, impostor, cpu=cpu)
    result["exact_ms_p50"] = round(pct(g_ms + i_ms, 50), 3)
    result["exact_ms_p95"] = round(pct(g_ms + i_ms, 95), 3)
    result["exact_cpu_ms_p50"] = round(pct(cpu, 50), 3)
    result["exact_genuine_rank1"] = round(float(np.mean(np.array(g_exact) == who + 1)), 4)
    return g_exact, i_exact


def bench_faiss(
    store, model, params, args: argparse.Namespace, genuine: tuple, impostor: tuple, result: dict
) -> None:
    """FAISS's HNSW graph: built (or, with --reuse, loaded from the file a kept run saved),
    then searched at each width in ``args.ef``."""
    from mobileface.gallery import ModelIndex

    if not args.reuse:
        progress(f"building the FAISS HNSW graph (M {params.connectivity}, "
                 f"efConstruction {params.expansion_add}, re-rank {params.rerank})")  # fmt: skip
        approx = ModelIndex(store, model, kind="approx", hnsw=params, threads=args.threads)
        t0 = time.perf_counter()
        approx.sync()
        result["approx_build_s"] = round(time.perf_counter() - t0, 1)
        progress(f"built in {result['approx_build_s']} s")
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
        faiss_distances()
        cpu: list[float] = []
        g_ms, g_top = time_queries(approx, genuine[0], cpu=cpu)
        i_ms, i_top = time_queries(approx, impostor[0], cpu=cpu)
        result["approx"].append(
            {
                "ef": ef,
                "ms_p50": round(pct(g_ms + i_ms, 50), 3),
                "ms_p95": round(pct(g_ms + i_ms, 95), 3),
                "cpu_ms_p50": round(pct(cpu, 50), 3),
                "cpu_ms_p95": round(pct(cpu, 95), 3),
                "recall1_genuine": round(float(np.mean(np.array(g_top) == genuine[1])), 4),
                "recall1_impostor": round(float(np.mean(np.array(i_top) == impostor[1])), 4),
                "distances_per_query": round(faiss_distances() / (len(g_ms) + len(i_ms))),
                "load": round(os.getloadavg()[0], 1),
            }
        )
        progress(f"FAISS {json.dumps(result['approx'][-1])}")


def bench_pgvector(
    source, url: str, model, params, args: argparse.Namespace, genuine: tuple, impostor: tuple,
    result: dict,
) -> list[dict]:  # fmt: skip
    """The same gallery copied into PostgreSQL, searched with pgvector's HNSW index. A build
    that passes ``--pg-build-limit`` is cancelled; how far it got is recorded instead."""
    from mobileface.gallery import DatabaseUnavailableError, copy_gallery
    from mobileface.gallery.postgres import DatabaseIndex, PostgresStore

    out = []
    limit = args.pg_build_limit
    with PostgresStore(url, hnsw=params) as pg, BuildWatch(url, limit=limit) as watch:
        t0 = time.perf_counter()
        try:
            copy_gallery(source, pg)  # bulk copy, then one HNSW build (m, ef_construction)
        except DatabaseUnavailableError:
            if watch.cancelled is None:
                raise
            result["pg_index_build_unfinished"] = watch.cancelled
            progress(f"pgvector build cancelled at the limit: {json.dumps(watch.cancelled)}")
            return out
        done = time.perf_counter()
        result["pg_copy_and_build_s"] = round(done - t0, 1)
        if watch.started is not None:
            result["pg_index_build_s"] = round(done - watch.started, 1)
        progress(f"copied and built in {result['pg_copy_and_build_s']} s")
        for ef in args.pg_ef:
            index = DatabaseIndex(pg, model, kind="approx", ef_search=ef)
            g_ms, g_top = time_queries(index, genuine[0])
            i_ms, i_top = time_queries(index, impostor[0])
            out.append(
                {
                    "ef": ef,
                    "ms_p50": round(pct(g_ms + i_ms, 50), 3),
                    "ms_p95": round(pct(g_ms + i_ms, 95), 3),
                    "recall1_genuine": round(float(np.mean(np.array(g_top) == genuine[1])), 4),
                    "recall1_impostor": round(float(np.mean(np.array(i_top) == impostor[1])), 4),
                    "load": round(os.getloadavg()[0], 1),
                }
            )
            progress(f"pgvector {json.dumps(out[-1])}")
    return out


class BuildWatch:
    """Reports the progress of CREATE INDEX on the server every ``every`` seconds (from
    ``pg_stat_progress_create_index``) and when the build began; cancels it once it has run
    ``limit`` seconds, keeping how far it got in :attr:`cancelled`."""

    def __init__(self, url: str, every: float = 30.0, limit: float | None = None) -> None:
        self.url, self.every, self.limit = url, every, limit
        self.started: float | None = None
        self.cancelled: dict | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BuildWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            last = 0.0
            while not self._stop.wait(1.0):
                row = conn.execute(
                    "SELECT pid, phase, tuples_done, blocks_done, blocks_total "
                    "FROM pg_stat_progress_create_index"
                ).fetchone()
                if row is None:
                    continue
                now = time.perf_counter()
                self.started = self.started or now
                pid, phase, tuples, blocks, blocks_total = row
                state = {
                    "seconds": round(now - self.started),
                    "phase": phase,
                    "tuples_done": tuples,
                    "table_scanned": round(blocks / blocks_total, 4) if blocks_total else None,
                }
                if now - last >= self.every:
                    last = now
                    progress(f"pgvector index build: {json.dumps(state)}")
                if self.limit and now - self.started > self.limit and self.cancelled is None:
                    self.cancelled = state
                    conn.execute("SELECT pg_cancel_backend(%s)", (pid,))


def export_model(path: Path) -> Path:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from mobileface.export import export_onnx
    from mobileface.models import create_model
    from models_helpers import randomize_and_calibrate

    torch.manual_seed(0)
    return export_onnx(randomize_and_calibrate(create_model("mobilefacenet")), path)


def data_dir() -> Path:
    return Path(os.environ.get("MOBILEFACE_DATA", REPO.parent / "shared" / "data"))


def test_helpers() -> None:
    """The tests' helpers (real servers, throwaway PostgreSQL clusters) are used here too."""
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))


def bench_http(args: argparse.Namespace) -> list[dict]:
    from mobileface.gallery import GalleryStore, copy_gallery, open_store
    from mobileface.gallery.pipeline import model_key_for
    from mobileface.runtime import open_embedder

    work = Path(tempfile.mkdtemp(prefix="bench-http-", dir=args.workdir))
    model = Path(args.model) if args.model else export_model(work / "mobilefacenet.onnx")
    key = model_key_for(model, open_embedder(model))
    vectors, _ = synthetic(args.gallery)
    bulk_gallery(work / "g.db", vectors, key)
    db, postgres = str(work / "g.db"), None
    if args.db == "postgres":
        postgres = Postgres(args.pg)
        db = postgres.database()
        with GalleryStore(work / "g.db") as source, open_store(db) as target:
            copy_gallery(source, target)
    data = Path(args.photo).read_bytes()
    rows = []
    try:
        for servers in args.servers:
            rows.append(identify_load(db, model, servers, data, args, work))
            rows[-1].update(gallery=args.gallery, backend=args.db, photo=Path(args.photo).name)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if postgres is not None:
            postgres.close()
    return rows


def identify_load(
    db: str, model: Path, count: int, photo: bytes, args: argparse.Namespace, work: Path
) -> dict:
    """``count`` servers on ``db``, ``args.clients`` clients spread over them for
    ``args.seconds``, each sending ``photo`` to /v1/identify as fast as it is answered."""
    import httpx

    test_helpers()
    from gallery_helpers import Server

    extra = ("--workers", str(args.workers)) if args.workers else ()
    servers = [
        Server(db, model, data_dir(), *extra, env=dict(os.environ), log=work / f"s{i}.log")
        for i in range(count)
    ]
    files = {"image": ("probe.jpg", photo, "image/jpeg")}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    try:
        for server in servers:
            server.start(timeout=300)
            with httpx.Client(base_url=server.url, timeout=60) as c:
                for _ in range(5):  # warm up
                    c.post("/v1/identify", files=files).raise_for_status()
        stop = time.monotonic() + args.seconds

        def client(k: int) -> None:
            with httpx.Client(base_url=servers[k % count].url, timeout=60) as c:
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
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        for server in servers:
            server.stop()
    return {
        "servers": count,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": errors[0],
        "rps": round(len(latencies) / elapsed, 1),
        "ms_p50": round(statistics.median(latencies), 1),
        "ms_p95": round(pct(latencies, 95), 1),
    }


def bench_faults(args: argparse.Namespace) -> list[dict]:
    """Two servers on one PostgreSQL gallery: shared at once, then faults."""
    test_helpers()
    from gallery_helpers import Server

    work = Path(tempfile.mkdtemp(prefix="bench-faults-", dir=args.workdir))
    model = Path(args.model) if args.model else export_model(work / "mobilefacenet.onnx")
    photos = sorted((data_dir() / "lfw" / "images").glob("*/*.jpg"))
    if not photos:
        raise SystemExit(f"bench_gallery: no LFW photos under {data_dir()}")
    postgres = Postgres("auto")
    url = postgres.database()
    servers = [
        Server(url, model, data_dir(), env=dict(os.environ), log=work / f"s{i}.log")
        for i in range(2)
    ]
    rows = []
    try:
        for server in servers:
            server.start(timeout=300)
        rows.append(shared_at_once(servers, photos, args.clients, args.seconds))
        print(json.dumps(rows[-1]), flush=True)
        rows.append(enrolment_stream(url, servers, photos, "sigkill", servers[0].kill))
        print(json.dumps(rows[-1]), flush=True)
        servers[0].start(timeout=300)
        rows.append(enrolment_stream(url, servers, photos, "pg_restart", postgres.cluster.restart))
        print(json.dumps(rows[-1]), flush=True)
    finally:
        for server in servers:
            server.stop()
        postgres.close()
    return rows


def post_photo(client, url: str, path: Path, name: str | None = None):
    files = {"images" if name else "image": (path.name, path.read_bytes(), "image/jpeg")}
    if name:
        return client.post(f"{url}/v1/persons", data={"name": name}, files=files)
    return client.post(f"{url}/v1/identify", files=files)


def shared_at_once(servers: list, photos: list[Path], clients: int, seconds: float) -> dict:
    """Each client enrols a new photo through one server and at once identifies it through
    the other: the top match must be the person just enrolled."""
    import httpx

    counter = iter(range(len(photos)))
    lock = threading.Lock()
    stats = {"enrolled": 0, "identified": 0, "wrong_or_missing": 0, "errors": 0}
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        enrol_at, ask_at = servers[k % 2].url, servers[(k + 1) % 2].url
        with httpx.Client(timeout=120) as c:
            while time.monotonic() < stop:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                r = post_photo(c, enrol_at, photos[i], f"photo {i}")
                if r.status_code == 422:  # no face found in this photo: not an error
                    continue
                outcome = "errors"
                if r.status_code == 201:
                    r = post_photo(c, ask_at, photos[i])
                    if r.status_code == 200:
                        found = r.json()["matches"][0]["name"] == f"photo {i}"
                        outcome = "identified" if found else "wrong_or_missing"
                with lock:
                    stats["enrolled"] += outcome != "errors"
                    stats[outcome] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"part": "enrol on one, identify on the other", "clients": clients, **stats}


def enrolment_stream(url: str, servers: list, photos: list[Path], fault: str, act) -> dict:
    """Four clients (two per server) enrol persons of two photos each; ``act`` strikes in the
    middle. Then every acknowledged enrolment must be in the database, whole."""
    import httpx

    from mobileface.gallery import open_store

    acknowledged: list[tuple[int, str]] = []
    failures: dict[str, int] = {}
    successes: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    start = time.monotonic()

    def client(k: int) -> None:
        base = servers[k % 2].url
        with httpx.Client(timeout=30) as c:
            i = 0
            while not stop.is_set():
                pair = photos[(2 * (k + 4 * i)) % len(photos) :][:2]
                name = f"{fault} {k}-{i}"
                files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in pair]
                try:
                    r = c.post(f"{base}/v1/persons", data={"name": name}, files=files)
                    outcome = str(r.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    if outcome == "201":
                        acknowledged.append((r.json()["id"], name))
                        successes.append(time.monotonic() - start)
                    else:
                        failures[outcome] = failures.get(outcome, 0) + 1
                if outcome != "201":
                    if servers[k % 2].proc.poll() is not None:
                        return  # its server is gone
                    time.sleep(0.1)
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(5)
    struck = time.monotonic() - start
    act()
    back = time.monotonic() - start  # the fault is over: killed, or restarted and ready
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    with open_store(url) as store:
        people = {p.id: p for p in store.persons() if p.name.startswith(fault)}
    lost = [pid for pid, name in acknowledged if pid not in people or people[pid].name != name]
    after = [t for t in sorted(successes) if t > back]
    around = [t for t in sorted(successes) if struck - 2 < t < back + 2]
    return {
        "part": fault,
        "acknowledged": len(acknowledged),
        "acknowledged_after_fault": len(after),
        "failures": failures,
        "fault_s": round(back - struck, 2),
        "first_success_after_fault_s": round(after[0] - back, 2) if after else None,
        "longest_gap_between_successes_s": round(max(np.diff(around), default=0.0), 2),
        "lost": len(lost),
        "partial": sum(len(p.faces) != 2 for p in people.values()),
        "unacknowledged_but_stored": len(people) - (len(acknowledged) - len(lost)),
    }


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
    from mobileface.gallery.index import HNSWParams

    faiss_default = HNSWParams()
    search.add_argument(
        "--connectivity", type=int, default=faiss_default.connectivity, help="FAISS HNSW M"
    )
    search.add_argument(
        "--expansion-add",
        type=int,
        default=faiss_default.expansion_add,
        help="FAISS HNSW efConstruction",
    )
    search.add_argument(
        "--rerank",
        type=int,
        default=faiss_default.rerank,
        help="FAISS candidates per result re-scored exactly on the float vectors",
    )
    search.add_argument("--pg-connectivity", type=int, help="pgvector m (default: the store's)")
    search.add_argument(
        "--pg-expansion-add", type=int, help="pgvector ef_construction (default: the store's)"
    )
    search.add_argument(
        "--ef", type=int, nargs="+", default=[64, 256, 512], help="search widths to measure"
    )
    search.add_argument(
        "--pg-ef",
        type=int,
        nargs="+",
        default=None,
        help="pgvector's search widths (at most 1000; default: those of --ef up to 1000)",
    )
    search.add_argument(
        "--pg-memory",
        default="3GB",
        help="maintenance_work_mem of the throwaway cluster (the HNSW build needs its graph "
        "in memory: about 1.5 GB for 1M faces)",
    )
    search.add_argument(
        "--pg-build-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="cancel a pgvector index build that runs longer, recording how far it got",
    )
    search.add_argument("--threads", type=int, default=0, help="index build threads (all)")
    search.add_argument(
        "--pg",
        metavar="auto|URL",
        help="also copy each gallery into PostgreSQL and search it with pgvector (auto: a "
        "throwaway cluster; URL: an empty database of yours)",
    )
    search.add_argument("--keep", action="store_true", help="keep the gallery files")
    search.add_argument(
        "--reuse",
        metavar="DIR",
        help="search the gallery and FAISS graph a --keep run left in DIR (one size and "
        "spectrum, as in that run) instead of writing and building them: to time searches "
        "again, e.g. when the machine is quieter",
    )
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
    http.add_argument("--servers", type=int, nargs="+", default=[1], help="server processes")
    http.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help="backend")
    http.add_argument("--pg", default="auto", metavar="auto|URL", help="with --db postgres")
    faults = sub.add_parser("faults", help="two servers on one PostgreSQL gallery, and faults")
    faults.add_argument("--model", help=".onnx model (default: export a random-init one)")
    faults.add_argument("--clients", type=int, default=8)
    faults.add_argument("--seconds", type=float, default=20, help="of the shared phase")
    for p in (search, http, faults):
        p.add_argument("--workdir", default=None, help="where the temporary galleries go")
        p.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.part == "search" and args.pg_ef is None:
        args.pg_ef = sorted({min(ef, 1000) for ef in args.ef})
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    rows = {"search": bench_search, "http": bench_http, "faults": bench_faults}[args.part](args)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
