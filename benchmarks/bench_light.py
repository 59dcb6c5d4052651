"""Faces in bad light (issue 17): detection, alignment and matching on relit LFW photos.

    .venv/bin/python benchmarks/bench_light.py --crop-norm none,dark   # View 2, ~40 min here
    .venv/bin/python benchmarks/bench_light.py --view 1 --crop-norm none,dark,clahe,stretch
    .venv/bin/python benchmarks/bench_light.py --skip-accuracy --timing-photos 300

1. **The relit set.** The full 250x250 photos of the pair list, relit by
   :mod:`mobileface.evaluation.relight` (directional shading, gamma 0.2..3, exposure 0.1..1,
   sensor noise, 75 % grayscale, JPEG), seed 17, into ``--out`` (built once, then reused).
   LFW is used for evaluation only.
2. **Accuracy, before and after**, for the relit photos and for LFW's own photos, through the
   evaluation pipeline's steps with its defaults (``EmbedOptions()``: detector options, face
   policy; 5-point alignment; the embeddings of the crop and of its mirror image summed).
   *Before* is the pipeline without issue 17: one detection pass, crops as they are.
   *After*: YuNet's low-light pass (``low_light=True``, now the default) and, with
   ``--crop-norm dark``, dark crops restored (``normalise_crop``, now the default). Each photo
   is detected once, with the low-light pass on: its first pass is exactly the *before*
   detector's (same code, same input), so a face it marks ``found_by="photo"`` is the face
   *before* finds, and one marked ``low_light`` is a photo *before* had no face in.
   ``--crop-norm`` lists the crop normalisations to measure (``none``: crops as they are).
   Two ways to score a photo without a face: ``eval`` as ``mobileface eval`` does (a centre
   crop, which on LFW's face-centred photos is nearly an alignment), ``refused`` as
   ``verify``, ``identify`` and the service do (no face, no match: its pairs score -1).
   Figures: photos with no face, 10-fold accuracy (the pair list's folds; View 1 has none: 10
   stratified folds), AUC, TAR at FAR 1e-2 and 1e-3 (where the pair count supports it).
3. **Detection time on ordinary photos**, before and after, in one process, interleaved photo
   by photo: ``detect`` on LFW's own photos (every one has a face, so the low-light pass never
   runs) with the library's default YuNet (whole photo) and with ``verify``'s
   (``detect_sides``). Medians over rounds of the mean time per photo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOBILEFACE_DATA", ROOT.parent / "shared" / "data"))
FARS = (1e-2, 1e-3)
DEFAULT_OUT = Path.home() / ".cache" / "mobileface" / "relit-lfw-s17"


def crop_normalisers() -> dict:
    """Contrast normalisations of an aligned RGB crop, by name: ``none`` (as before issue 17),
    ``dark`` (:func:`mobileface.align.lighting.normalise_crop`: dark or flat crops only) and,
    for comparison, ``clahe`` and ``stretch`` applied to every crop."""
    import cv2

    from mobileface.align.lighting import normalise_crop, restore_contrast

    def stretch(crop: np.ndarray) -> np.ndarray:
        ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)
        y = ycc[:, :, 0].astype(np.float32)
        lo, hi = np.percentile(y, (1, 99))
        ycc[:, :, 0] = np.clip((y - lo) * 255.0 / max(hi - lo, 1.0), 0, 255).astype(np.uint8)
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)

    return {
        "none": lambda c: c,
        "dark": normalise_crop,
        "clahe": lambda c: restore_contrast(c, sigma=1.0, clip=2.0, tiles=4),
        "stretch": stretch,
    }


def load_pairs(view: int, images: Path):
    from mobileface.data.pairs import read_pairs
    from mobileface.evaluation.verification import pairs_from_list

    name = "pairs.txt" if view == 2 else "pairsDevTest.txt"
    pairs_file = DATA / "lfw" / name
    return pairs_from_list(read_pairs(pairs_file, images), images, name), pairs_file


def detect_all(paths: list[Path], detector, sizes: set, label: str) -> tuple[list, dict]:
    """The face the evaluation pipeline keeps in each photo (``None``: no face), and the crops
    the model sees, by ``(size, "before" | "after")``: aligned, or centre crops where no face
    is found (before the low-light pass, the faces it finds are not found)."""
    from tqdm import tqdm

    from mobileface.align import align_face, select_face
    from mobileface.align.lighting import FOUND_BY_PHOTO
    from mobileface.evaluation.pipeline import EmbedOptions, centre_crop
    from mobileface.image import load_image

    policy = EmbedOptions().policy
    faces: list = []
    crops: dict = {(size, when): [] for size in sizes for when in ("before", "after")}
    for path in tqdm(paths, desc=f"detecting {label}", unit="img", mininterval=10):
        image = load_image(path)
        found = detector.detect(image)
        face = select_face(found, policy, image.shape) if found else None
        faces.append(face)
        for size in sizes:
            fallback = centre_crop(image, size)
            aligned = fallback if face is None else align_face(image, face.landmarks, size)
            first = face is not None and face.found_by == FOUND_BY_PHOTO
            crops[size, "before"].append(aligned if first else fallback)
            crops[size, "after"].append(aligned)
    return faces, crops


def embed(embedder, crops: list[np.ndarray], batch: int = 64) -> np.ndarray:
    rows = []
    for i in range(0, len(crops), batch):
        chunk = np.stack(crops[i : i + batch])
        e = np.asarray(embedder.embed(chunk), np.float32)
        e = e + np.asarray(embedder.embed(np.ascontiguousarray(chunk[:, :, ::-1])), np.float32)
        rows.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
    return np.concatenate(rows)


def measure(pair_set, vectors: np.ndarray, refused: np.ndarray | None = None) -> dict:
    """Figures of the pairs; ``refused`` marks photos whose pairs score as non-matches."""
    from mobileface.evaluation.metrics import far_key, verification_metrics

    scores = np.einsum("ij,ij->i", vectors[pair_set.index_a], vectors[pair_set.index_b])
    if refused is not None:  # as verify, identify and the service: no face, no match
        scores[refused[pair_set.index_a] | refused[pair_set.index_b]] = -1.0
    m = verification_metrics(np.clip(scores, -1, 1), pair_set.same, pair_set.folds, FARS)
    out = {"accuracy": m.accuracy, "accuracy_std": m.accuracy_std, "auc": m.auc}
    out.update({f"tar_at_far_{far_key(t.far)}": t.tar for t in m.tar_at_far})
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def accuracy(args: argparse.Namespace, models: list) -> dict:
    from mobileface.align import create_detector
    from mobileface.align.lighting import FOUND_BY_LOW_LIGHT, is_dark_crop
    from mobileface.evaluation.pipeline import EmbedOptions
    from mobileface.evaluation.relight import relight_folder

    lfw = DATA / "lfw" / "images"
    clean, pairs_file = load_pairs(args.view, lfw)
    names = [str(s.path.relative_to(lfw)) for s in clean.sources]
    t0 = time.perf_counter()
    manifest = relight_folder(lfw, args.out, names, seed=args.seed)
    print(
        f"relit set: {len(manifest['images'])} photos in {args.out} "
        f"({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr,
    )
    relit, _ = load_pairs(args.view, args.out)
    options = EmbedOptions()  # today's `mobileface eval` defaults, low-light pass on
    detector = create_detector(options.detector, **options.detector_options())
    norms = crop_normalisers()
    chosen = args.crop_norm.split(",")
    unknown = [c for c in chosen if c not in norms]
    if unknown:
        raise SystemExit(f"--crop-norm: unknown {unknown}; choose from {', '.join(norms)}")
    out: dict = {
        "pairs": str(pairs_file),
        "seed": args.seed,
        "relit_dir": str(args.out),
        "policy": options.policy,
        "detector_options": options.detector_options(),
    }
    sizes = {tuple(int(v) for v in m.embedder.input_size) for m in models}
    for label, pair_set in (("relit", relit), ("lfw", clean)):
        paths = [s.path for s in pair_set.sources]
        faces, crops = detect_all(paths, detector, sizes, label)
        low = np.array([f is not None and f.found_by == FOUND_BY_LOW_LIGHT for f in faces])
        none = np.array([f is None for f in faces])
        entry: dict = {
            "photos": len(paths),
            "no_face_before": int((none | low).sum()),
            "no_face_after": int(none.sum()),
            "found_by_low_light": int(low.sum()),
        }
        for m in models:
            size = tuple(int(v) for v in m.embedder.input_size)
            for when, refused in (("before", none | low), ("after", none)):
                dark = sum(is_dark_crop(c) for c in crops[size, when])
                entry[f"dark_crops_{when}_{size[0]}x{size[1]}"] = int(dark)
                for name in chosen:
                    vectors = embed(m.embedder, [norms[name](c) for c in crops[size, when]])
                    for protocol in ("eval", "refused"):
                        figures = measure(
                            pair_set, vectors, refused if protocol == "refused" else None
                        )
                        entry[f"{m.label} {when} crop-norm={name} {protocol}"] = figures
                        print(
                            f"{label:5s} {m.label[-24:]:24s} {when:6s} {name:7s} {protocol:7s} "
                            f"acc {100 * figures['accuracy']:.2f} +- "
                            f"{100 * figures['accuracy_std']:.2f}  AUC {figures['auc']:.4f}  "
                            f"TAR@FAR 1e-2 / 1e-3 {_pct(figures['tar_at_far_0.01'])} / "
                            f"{_pct(figures['tar_at_far_0.001'])}",
                            file=sys.stderr,
                            flush=True,
                        )
        out[label] = entry
        print(
            f"{label}: no face before {entry['no_face_before']}, after "
            f"{entry['no_face_after']} of {len(paths)} photos",
            file=sys.stderr,
        )
    return out


def timing(args: argparse.Namespace) -> dict:
    """Median ms per ``detect`` on ordinary photos, low-light pass off and on, interleaved."""
    from mobileface.align import DETECT_SIDES, create_detector
    from mobileface.image import load_image

    lfw = DATA / "lfw" / "images"
    paths = sorted(lfw.rglob("*.jpg"))[:: max(1, 9056 // max(1, args.timing_photos))]
    images = [load_image(p) for p in paths[: args.timing_photos]]
    configs = {"default": {}, "verify": {"detect_sides": DETECT_SIDES}}
    result: dict = {"photos": len(images), "rounds": args.rounds}
    for config, kwargs in configs.items():
        dets = {
            "before": create_detector("yunet", low_light=False, **kwargs),
            "after": create_detector("yunet", low_light=True, **kwargs),
        }
        for d in dets.values():  # warm-up, and every photo must have a face
            missing = sum(not d.detect(im) for im in images)
            if missing:
                raise SystemExit(f"{missing} ordinary photos without a face: not a timing set")
        times: dict[str, list[float]] = {k: [] for k in dets}
        for r in range(args.rounds):
            total = dict.fromkeys(dets, 0.0)
            for i, im in enumerate(images):  # interleaved photo by photo, order alternating
                for key in list(dets) if (r + i) % 2 == 0 else list(reversed(dets)):
                    t0 = time.perf_counter()
                    dets[key].detect(im)
                    total[key] += time.perf_counter() - t0
            for key in dets:
                times[key].append(total[key] * 1e3 / len(images))
        result[config] = {k: round(statistics.median(v), 4) for k, v in times.items()}
        result[config]["rounds_ms"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
        b, a = result[config]["before"], result[config]["after"]
        print(
            f"detect ({config}), ordinary photos: before {b:.3f} ms, after {a:.3f} ms "
            f"({100 * (a - b) / b:+.1f} %)",
            file=sys.stderr,
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--view",
        type=int,
        choices=(1, 2),
        default=2,
        help="LFW View 2 (pairs.txt, default) or View 1 (pairsDevTest.txt)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="relit set folder")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--model",
        action="append",
        help="model spec (default: the bundled default weights); repeatable",
    )
    parser.add_argument("--crop-norm", default="none", help="comma-separated crop normalisations")
    parser.add_argument("--timing-photos", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (DATA / "lfw" / "images").is_dir():
        print(f"LFW not found under {DATA} (set MOBILEFACE_DATA)", file=sys.stderr)
        return 1
    from mobileface.evaluation.models import open_model

    results: dict = {"load_average_at_start": os.getloadavg()[0]}
    if not args.skip_timing:
        results["timing"] = timing(args)
    if not args.skip_accuracy:
        models = [open_model(spec) for spec in (args.model or [None])]
        results["accuracy"] = accuracy(args, models)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
