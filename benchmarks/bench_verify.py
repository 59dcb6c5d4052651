"""End-to-end verify before and after issue 18, side by side in one process.

    .venv/bin/python benchmarks/bench_verify.py                 # 7 rounds, ~2 minutes
    .venv/bin/python benchmarks/bench_verify.py --rounds 3 --json out.json
    .venv/bin/python benchmarks/bench_verify.py --rounds 0 --lfw  # accuracy only, ~3 minutes

Pipelines, one thread, interleaved round by round so a busy machine slows all of them alike:

* ``before fp32`` / ``before int8``: as ``verify`` ran before (fp32 was the default): YuNet on
  the whole photo, the two crops embedded one at a time, the whole photo area-averaged when a
  face is shrunk more than 2x;
* ``after fp32`` / ``after int8``: as ``verify`` runs now: YuNet on shrunk copies
  (``DETECT_SIDES``), small faces measured again at full size, both crops in one network call,
  area-averaging around the face only; ``after int8 1-by-1`` embeds the crops one at a time;
* ``after auto`` is ``verify``'s default: the precision ``choose_precision`` picks here;
* ``onet auto``: the same with ONet's second landmark pass (``verify --landmarks onet``;
  issue 18.1); ``after`` and ``before`` align on YuNet's own points.

Photos: two 250x250 LFW photos of one person; each placed at its size on a 1280x720 grey
canvas; each scaled to 720x720 on a 1280x720 canvas (a face 2.9x larger), all as JPEG files
(quality 95), so decoding is timed. Yardstick: the peer MobileFaceNet (../shared/peers,
comparison only) embedding one crop, batch 1, in the same rounds. The goal is a 250x250 pair
in at most 8 ms and at most 2.2x one peer embedding.

``--lfw``: LFW View 2 accuracy (10 folds) through verify's own steps (one detector view, the
face the policy picks, no flip; so not the model card's protocol), before and after, and with
ONet's pass, fp32 and int8.
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
LFW = SHARED / "data" / "lfw" / "images"
PAIR = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")
STEPS = ("decode", "detect", "align", "embed", "total")


def make_photos(folder: Path) -> dict[str, tuple[Path, Path]]:
    """The photo pairs: LFW's own files, and 1280x720 JPEGs made from them."""
    import cv2

    from mobileface.image import load_image, save_image

    sets: dict[str, list[Path]] = {"250x250": [], "1280x720 placed": [], "1280x720 scaled": []}
    for i, name in enumerate(PAIR):
        src = LFW / name
        rgb = load_image(src)
        sets["250x250"].append(src)
        placed = np.full((720, 1280, 3), 110, np.uint8)
        placed[235:485, 515:765] = rgb
        scaled = np.full((720, 1280, 3), 110, np.uint8)
        scaled[:, 280:1000] = cv2.resize(rgb, (720, 720), interpolation=cv2.INTER_CUBIC)
        for label, image in (("1280x720 placed", placed), ("1280x720 scaled", scaled)):
            path = folder / f"{label.split()[1]}-{i}.jpg"
            save_image(path, image, jpeg_quality=95)
            sets[label].append(path)
    return {k: (v[0], v[1]) for k, v in sets.items()}


def build_pipelines() -> tuple[dict, dict]:
    """The verifiers to compare, and what ``choose_precision`` picked."""
    from mobileface import weights
    from mobileface.align import YuNetDetector, align_face
    from mobileface.align.yunet import DETECT_SIDES, VERIFY_YUNET
    from mobileface.runtime import FaceVerifier, OnnxEmbedder
    from mobileface.runtime.precision import choose_precision

    class Before(FaceVerifier):
        """The crop as before: the whole photo area-averaged for a face shrunk >2x."""

        def align(self, image_rgb, face):
            return align_face(image_rgb, face.landmarks, size=tuple(self.embedder.input_size))

    default = weights.default_weights_name()
    files = {"fp32": default, "int8": f"{default}_int8"}

    def emb(precision: str) -> OnnxEmbedder:  # a session of its own, as in one CLI process
        return OnnxEmbedder(weights.resolve_weights(files[precision]), threads=1)

    def fast(landmarks: str = VERIFY_YUNET["landmarks"]) -> YuNetDetector:  # as verify builds it
        return YuNetDetector(detect_sides=DETECT_SIDES, **{**VERIFY_YUNET, "landmarks": landmarks})

    def old(precision: str) -> FaceVerifier:
        return Before(
            emb(precision), YuNetDetector(landmarks="yunet"), policy="largest", batch=False
        )

    choice = choose_precision()
    pipelines = {
        "before fp32": old("fp32"),
        "before int8": old("int8"),
        "after fp32": FaceVerifier(emb("fp32"), fast()),
        "after int8": FaceVerifier(emb("int8"), fast()),
        "after int8 1-by-1": FaceVerifier(emb("int8"), fast(), batch=False),
        "onet fp32": FaceVerifier(emb("fp32"), fast("onet")),
        "onet int8": FaceVerifier(emb("int8"), fast("onet")),
    }
    pipelines["after auto"] = pipelines[f"after {choice.precision}"]
    pipelines["onet auto"] = pipelines[f"onet {choice.precision}"]
    return pipelines, choice.to_dict()


def peer_crop():
    from mobileface.align import create_detector
    from mobileface.align.detect import align_image
    from mobileface.image import load_image

    return align_image(load_image(LFW / PAIR[0]), create_detector("yunet"))[0]


def measure(pipelines: dict, photos: dict, rounds: int, runs: int) -> dict:
    """Median over rounds of each round's median, per photo set, pipeline and step."""
    from mobileface.runtime import OnnxEmbedder

    peer = OnnxEmbedder(PEER, threads=1) if PEER.is_file() else None
    crop = peer_crop()
    distinct = {k: v for k, v in pipelines.items() if not k.endswith(" auto")}
    per: dict = {}
    for r in range(rounds):
        for label, (a, b) in photos.items():
            for name, verifier in distinct.items():
                verifier.verify(a, b)
                times = [verifier.verify(a, b).timings for _ in range(runs)]
                for step in STEPS:
                    value = float(np.median([t[step] for t in times]))
                    per.setdefault((label, name, step), []).append(value)
        if peer is not None:
            peer.embed([crop])
            times = []
            for _ in range(runs * 3):
                t0 = time.perf_counter()
                peer.embed([crop])
                times.append((time.perf_counter() - t0) * 1e3)
            per.setdefault(("peer", "embed"), []).append(float(np.median(times)))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    out: dict = {"peer_embed_ms": None}
    if ("peer", "embed") in per:
        out["peer_embed_ms"] = float(np.median(per.pop(("peer", "embed"))))
    for (label, name, step), values in per.items():
        out.setdefault(label, {}).setdefault(name, {})[step] = float(np.median(values))
    for label in photos:
        for auto in ("after auto", "onet auto"):
            out[label][auto] = out[label][_auto_name(pipelines, auto)]
    return out


def _auto_name(pipelines: dict, auto: str = "after auto") -> str:
    chosen = pipelines[auto]
    return next(k for k, v in pipelines.items() if v is chosen and not k.endswith(" auto"))


def lfw_accuracy(pipelines: dict) -> dict:
    """LFW View 2 accuracy through each pipeline's detector and alignment, fp32 and int8."""
    from mobileface.align import center_crop
    from mobileface.data.pairs import read_pairs
    from mobileface.errors import NoFaceError
    from mobileface.evaluation.metrics import kfold_accuracy
    from mobileface.runtime import l2_normalize

    listed = read_pairs(LFW.parent / "pairs.txt", LFW)
    same = np.array([p.same for p in listed])
    folds = np.array([p.fold for p in listed])
    unique = sorted({x for p in listed for x in (p.image_a, p.image_b)})
    index = {p: i for i, p in enumerate(unique)}
    a = np.array([index[p.image_a] for p in listed])
    b = np.array([index[p.image_b] for p in listed])
    out: dict = {"pairs": len(listed), "images": len(unique)}
    for stage in ("before", "after", "onet"):
        verifier = pipelines[f"{stage} fp32"]
        crops, missed = [], 0
        for path in unique:
            rgb = verifier.load(path)
            try:
                crops.append(verifier.align(rgb, verifier.find_face(rgb)))
            except NoFaceError:
                crops.append(center_crop(rgb, tuple(verifier.embedder.input_size)))
                missed += 1
        batch = np.stack(crops)
        for precision in ("fp32", "int8"):
            embedder = pipelines[f"{stage} {precision}"].embedder
            emb = l2_normalize(embedder.embed(batch))
            result = kfold_accuracy(np.sum(emb[a] * emb[b], axis=1), same, folds)
            out[f"{stage} {precision}"] = {
                "accuracy": 100 * result.mean,
                "std": 100 * result.std,
                "no_face": missed,
            }
        print(f"LFW through the {stage} pipeline done", file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=15, help="verifications per round")
    parser.add_argument("--lfw", action="store_true", help="LFW View 2 accuracy, before/after")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args()

    import cv2

    from mobileface.runtime.precision import cpu_flags

    cv2.setNumThreads(1)
    pipelines, choice = build_pipelines()
    print(f"precision picked: {choice['precision']} ({choice['reason']})")
    report: dict = {"precision": choice}
    report["cpu_int8_flags"] = sorted({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())
    if args.lfw:
        report["lfw"] = lfw = lfw_accuracy(pipelines)
        print(f"\n== LFW View 2 through verify's steps ({lfw['pairs']} pairs, 10 folds) ==")
        for stage in ("before", "after", "onet"):
            for precision in ("fp32", "int8"):
                r = lfw[f"{stage} {precision}"]
                print(
                    f"{stage + ' ' + precision:18s} {r['accuracy']:.2f} +- {r['std']:.2f} % "
                    f"(no face: {r['no_face']})"
                )
    if args.rounds > 0:
        _timings(args, pipelines, report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _timings(args: argparse.Namespace, pipelines: dict, report: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        photos = make_photos(Path(tmp))
        report.update(measure(pipelines, photos, args.rounds, args.runs))
    peer = report["peer_embed_ms"]
    print(f"peer embedding (1 crop, batch 1): {peer:.2f} ms" if peer else "no peer model")
    for label in photos:
        print(f"\n== {label}: ms per pair, median of {args.rounds} rounds x {args.runs} runs ==")
        print(f"{'pipeline':20s} " + " ".join(f"{s:>7s}" for s in STEPS) + "  x peer")
        for name, steps in report[label].items():
            ratio = f"{steps['total'] / peer:7.2f}" if peer else "      -"
            values = " ".join(f"{steps[s]:7.2f}" for s in STEPS)
            print(f"{name:20s} {values} {ratio}")
        before, after = report[label]["before fp32"]["total"], report[label]["after auto"]["total"]
        print(f"after auto vs before fp32: {before / after:.2f}x faster")
        onet = report[label]["onet auto"]["total"]
        print(f"with ONet's landmark pass: {onet - after:+.2f} ms per pair ({onet / after:.2f}x)")
    if peer:
        total = report["250x250"]["after auto"]["total"]
        met = total <= 8.0 and total / peer <= 2.2
        print(
            f"\n250x250 goal (<= 8 ms and <= 2.2x the peer embedding): {total:.2f} ms, "
            f"{total / peer:.2f}x: {'met' if met else 'not met'}"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
