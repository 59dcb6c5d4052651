"""Build the bundled default weights from a finished training run, measuring everything.

    .venv/bin/python scripts/build_weights.py runs/mobilefacenet_relu_openvino_stage4/model.pt

1. Exports the checkpoint as ONNX fp32 (batch norm folded, PReLU as Conv/Relu/Add) and int8
   (QDQ, per-channel weights, calibrated on CelebA training crops), with parity checks.
2. LFW View 2 end to end from the photos with the default detector, alignment and face policy
   (YuNet, then MTCNN's ONet on each box for the 5 points, as `mobileface align` does; the
   low-light pass and dark-crop restoration; 5-point similarity onto the ArcFace template,
   flip): our fp32, our int8, the recipe's teacher, dlib's ResNet and
   the peer in one run, from the same crops. 10-fold accuracy, AUC, EER, TAR at FAR.
3. Thresholds at FAR 1e-3 and 1e-4 on calibration pairs: View 2's 3,000 same pairs and
   --different random pairs of different people among its images (seeded).
4. Speed, 1 thread: network latency at batch 1 interleaved with the peer's, and an end-to-end
   verify of two LFW photos as `mobileface verify` runs it.
5. Writes NAME.onnx, NAME_int8.onnx, their JSON model cards and NAME.md into --out.

Figures in the cards and README come from this script's output and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEACHERS = {
    "dlib": "dlib's ResNet (dlib_face_recognition_resnet_model_v1, face-recognition-models, CC0)",
    "face-reidentification-retail-0095": (
        "Intel's face-reidentification-retail-0095 (Open Model Zoo, Apache-2.0; Intel does not "
        "disclose its training data)"
    ),
}


def describe_teacher(spec: str | None) -> str | None:
    """A teacher's name and licence, for cards: ``dlib`` or a model file's known name."""
    if not spec:
        return None
    return TEACHERS.get(spec) or TEACHERS.get(Path(spec).stem) or Path(spec).name


def licence(teachers: list[str]) -> str:
    return (
        "Code: Apache-2.0. These weights were trained on CelebA (licensed for non-commercial "
        "research purposes only) and the Pins face set of Pinterest celebrity crops (no licence "
        "stated: research use only), and distilled from "
        + " and then ".join(teachers)
        + ". They inherit CelebA's terms: non-commercial research use only."
    )


# ------------------------------------------------------------------ crops
_detector = None


_policy: str  # set in each worker by _start


def _start(options: dict, policy: str) -> None:
    global _detector, _policy
    import cv2

    from mobileface.evaluation.pipeline import open_detector

    cv2.setNumThreads(1)
    _detector = open_detector("yunet", **options)
    _policy = policy


def _crop(path: str) -> tuple[bytes, bool]:
    """PNG bytes of the crop ``mobileface eval`` makes of ``path`` and whether a face was found."""
    import cv2

    from mobileface.evaluation.pipeline import OK, EmbedOptions, ImageSource, _make_crop

    source = ImageSource(path, path=Path(path))
    options = EmbedOptions(policy=_policy)
    crop, meta = _make_crop(source, source.read(), options, (112, 112), _detector)
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert ok
    return png.tobytes(), meta["status"] == OK


def aligned_pair_set(lfw: Path, workers: int, policy: str):
    """LFW View 2 as a pair set over in-memory aligned crops (made once, for every model)."""
    from tqdm import tqdm

    from mobileface.data.pairs import read_pairs
    from mobileface.evaluation.pipeline import EmbedOptions, ImageSource
    from mobileface.evaluation.verification import pairs_from_list

    pair_set = pairs_from_list(read_pairs(lfw / "pairs.txt", lfw / "images"), lfw / "images")
    paths = [str(s.path) for s in pair_set.sources]
    options = EmbedOptions(precise=True).detector_options()
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, _start, (options, policy)) as pool:
        results = list(
            tqdm(pool.imap(_crop, paths, chunksize=16), total=len(paths), desc="aligning LFW")
        )
    pair_set.sources = [
        ImageSource(s.name, data=png) for s, (png, _) in zip(pair_set.sources, results, strict=True)
    ]
    no_face = [s.name for s, (_, found) in zip(pair_set.sources, results, strict=True) if not found]
    return pair_set, no_face


def calibration_pairs(pair_set, different: int, seed: int = 0):
    """View 2's same pairs plus ``different`` random pairs of images of different people."""
    rng = np.random.default_rng(seed)
    people = np.array([s.name.split("/")[0] for s in pair_set.sources])
    n = len(people)
    a = rng.integers(0, n, size=different * 2)
    b = rng.integers(0, n, size=different * 2)
    keep = people[a] != people[b]
    a, b = a[keep][:different], b[keep][:different]
    same = pair_set.same
    index_a = np.concatenate([pair_set.index_a[same], a])
    index_b = np.concatenate([pair_set.index_b[same], b])
    labels = np.concatenate([np.ones(int(same.sum()), bool), np.zeros(len(a), bool)])
    return index_a, index_b, labels


# ------------------------------------------------------------------ steps
def export(checkpoint: Path, folder: Path, calib: Path) -> dict:
    from mobileface.cli import main as cli

    out = io.StringIO()
    argv = ["export", str(checkpoint), "--onnx", str(folder / "fp32.onnx"), "--int8"]
    argv += ["--calib", str(calib), "--int8-out", str(folder / "int8.onnx"), "--json"]
    with contextlib.redirect_stdout(out):
        status = cli(argv)
    if status != 0:
        sys.exit(f"export failed with status {status}")
    return json.loads(out.getvalue())


def evaluate(models: dict, pair_set, calib_pairs) -> dict:
    from mobileface.evaluation.calibration import calibrate
    from mobileface.evaluation.metrics import verification_metrics
    from mobileface.evaluation.models import open_model
    from mobileface.evaluation.pipeline import EmbedOptions, embed_images
    from mobileface.evaluation.verification import score_pairs

    results = {}
    options = EmbedOptions(aligned=True, flip=True)
    for label, spec in models.items():
        model = open_model(str(spec), threads=2)
        embeddings = embed_images(
            pair_set.sources, model.embedder, options, model_key=model.cache_key, describe=label
        )
        scores = score_pairs(embeddings, pair_set.index_a, pair_set.index_b)
        metrics = verification_metrics(scores, pair_set.same, pair_set.folds)
        cal_scores = score_pairs(embeddings, calib_pairs[0], calib_pairs[1])
        cal = calibrate(cal_scores, calib_pairs[2], [1e-3, 1e-4])
        results[label] = {"metrics": metrics.to_dict(), "calibration": cal.to_dict()}
    return results


def speed(models: dict, lfw: Path, rounds: int = 7) -> dict:
    import cv2

    from mobileface.align import create_detector
    from mobileface.align.yunet import DETECT_SIDES, VERIFY_YUNET
    from mobileface.runtime import open_embedder
    from mobileface.runtime.bench import bench_model, bench_verify
    from mobileface.runtime.verifier import FaceVerifier

    cv2.setNumThreads(1)
    timed = {k: v for k, v in models.items() if str(v).endswith(".onnx")}
    per = {k: [] for k in timed}
    for _ in range(rounds):
        for label, path in timed.items():
            per[label].append(bench_model(path, threads=1, batch=1, seconds=1.0).p50_ms)
    out = {label: {"p50_ms": float(np.median(v))} for label, v in per.items()}
    pair = [lfw / "images" / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2)]
    verifiers = {
        label: FaceVerifier(
            open_embedder(models[label], threads=1),
            detector=create_detector("yunet", detect_sides=DETECT_SIDES, **VERIFY_YUNET),
        )
        for label in ("fp32", "int8")
    }
    steps: dict[str, dict[str, list[float]]] = {label: {} for label in verifiers}
    for _ in range(rounds):  # interleaved, so that a busy spell slows both alike
        for label, verifier in verifiers.items():
            for key, value in bench_verify(verifier, *pair, runs=10)["ms"].items():
                steps[label].setdefault(key, []).append(value)
    for label, values in steps.items():
        out[label]["verify_ms"] = {k: float(np.median(v)) for k, v in values.items()}
    return out


# ------------------------------------------------------------------ card
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_stages(checkpoint: Path, limit: int = 10) -> list[dict]:
    """Architecture, steps, batch size and teacher of each training stage, first first,
    following ``model.init``: through training checkpoints, and into the card beside an ONNX
    export that a stage started from (its own stages, recorded when it was built)."""
    from mobileface.models.checkpoint import read_checkpoint

    stages: list[dict] = []
    path: Path | None = checkpoint
    while path is not None and path.is_file() and len(stages) < limit:
        if path.suffix == ".onnx":
            card = path.with_suffix(".json")
            if not card.is_file():
                sys.exit(f"{path}: a stage started from it, but its model card {card} is missing")
            earlier = json.loads(card.read_text())["training"]
            teacher = earlier.get("teacher")
            return [{"teacher": teacher, **stage} for stage in earlier["stages"]] + stages
        state = read_checkpoint(path)
        config = state.get("config") or {}
        stages.insert(
            0,
            {
                "architecture": state["model_name"],
                "steps": state.get("step") or 0,
                "batch_size": config["optim"]["batch_size"],
                "teacher": describe_teacher((config.get("distill") or {}).get("teacher")),
                "loss": stage_loss(config),
            },
        )
        init = config.get("model", {}).get("init")
        path = Path(init) if init else None
    return stages


def stage_loss(config: dict) -> str:
    """A stage's loss in words, from its recipe: the margin loss (unless ``loss.weight`` is 0)
    and the distillation (targets cached per crop, or the teacher run on each crop as
    augmented: ``distill.online``)."""
    loss, distill = config.get("loss") or {}, config.get("distill") or {}
    parts = []
    if float(loss.get("weight", 1.0)) > 0:
        parts.append(f"{loss.get('type', 'arcface')} margin")
    if distill.get("teacher"):
        how = "on each augmented crop" if distill.get("online") else "cached per crop"
        parts.append(f"distillation (weight {distill.get('weight')}, teacher {how})")
    return " + ".join(parts) or "none"


def training_record(checkpoint: Path, config_path: Path) -> dict:
    from mobileface.train.config import read_recipe

    stages = training_stages(checkpoint)
    log = checkpoint.parent / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    teachers = list(dict.fromkeys(stage["teacher"] for stage in stages if stage.get("teacher")))
    return {
        "config": str(config_path.resolve().relative_to(ROOT)),
        "recipe": read_recipe(config_path, resolve=False),
        "stages": stages,
        "steps": sum(stage["steps"] for stage in stages),
        "images_seen": sum(stage["steps"] * stage["batch_size"] for stage in stages),
        "view1_checks": [
            {"step": r["step"], **{k: v for k, v in r.items() if k.startswith("eval/")}}
            for r in evals
        ],
        "teacher": stages[-1].get("teacher"),
        "teachers": teachers,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def write_card(
    path: Path,
    name: str,
    onnx: Path,
    base: dict,
    evaluation: dict,
    speed_ms: dict,
    precision: str,
) -> dict:
    calibration = evaluation["calibration"]
    card = {
        "name": name,
        "precision": precision,
        **base,
        "file": {
            "onnx": onnx.name,
            "sha256": sha256(onnx),
            "size_mb": round(onnx.stat().st_size / 2**20, 3),
        },
        "thresholds": calibration["thresholds"],
        "calibration": {k: v for k, v in calibration.items() if k != "thresholds"},
        "results": {"lfw_view2": evaluation["metrics"]},
        "speed": speed_ms,
    }
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


REFERENCE_NAMES = {
    "teacher": "The teacher",
    "dlib": "dlib's ResNet",
    "peer": "the peer (`../shared/peers`, comparison only, never shipped)",
}


def latency(speed_ms: dict, label: str) -> str:
    timed = speed_ms.get(label)
    return f"{timed['p50_ms']:.2f} ms" if timed else "not timed (not ONNX)"


def cpu_description() -> dict:
    """The CPU the speed figures come from, and whether it has AVX-512 VNNI (int8 dot
    products: the shipped int8 model is faster than fp32 only with it)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown")  # fmt: skip
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    return {"model": model, "cores": os.cpu_count(), "avx512_vnni": "avx512_vnni" in flags}


def markdown(name: str, cards: dict, results: dict, speed_ms: dict, base: dict) -> str:
    from mobileface.evaluation.metrics import far_key
    from mobileface.models import model_spec

    rows = []
    for label, r in results.items():
        m = r["metrics"]
        rows.append(
            f"| {label} | {_pct(m['accuracy'])} +- {_pct(m['accuracy_std'])} | {m['auc']:.4f} "
            f"| {_pct(m['eer'])} | {_pct(m['tar_at_far'].get(far_key(1e-3)))} "
            f"| {latency(speed_ms, label)} |"
        )
    fp32 = cards["fp32"]
    training = base["training"]
    arch = base["architecture"]
    stage_steps = " + ".join(
        f"{stage['steps']:,}"
        + (f" as `{stage['architecture']}`" if stage["architecture"] != arch else "")
        for stage in training["stages"]
    )
    lines = [
        f"# Model card: `{name}`",
        "",
        f"MobileFaceNet (Chen et al. 2018) as the zoo's `{arch}` "
        f"({model_spec(arch).description}), 112x112 RGB "
        f"input, {base['embedding_size']}-d embedding, compared by cosine similarity. "
        "Trained by this project; built and measured "
        f"by `python scripts/build_weights.py` on {base['built']} (commit {base['commit']}).",
        "",
        "## Files",
        "",
        "| file | size | SHA-256 |",
        "|---|---|---|",
    ]
    for card in cards.values():
        f = card["file"]
        lines.append(f"| `{f['onnx']}` | {f['size_mb']:.2f} MB | `{f['sha256'][:16]}...` |")
    lines += [
        "",
        "## Accuracy: LFW View 2, end to end from the photos",
        "",
        f"{base['lfw_pairs']:,} pairs, 10 folds (threshold chosen on nine, accuracy on the "
        "tenth); the default pipeline: YuNet "
        "detection, MTCNN's ONet measuring the 5 points on each box, the default face policy "
        f"(`{base['lfw_policy']}`), 5-point similarity "
        "alignment onto the ArcFace template, embedding of the crop plus its mirror image. "
        f"Faces not found: {base['lfw_no_face']} of {base['lfw_images']:,} images (centre crop "
        "used). "
        + ", ".join(REFERENCE_NAMES[k] for k in results if k in REFERENCE_NAMES)
        + " go through the same crops.",
        "",
        "| model | accuracy | AUC | EER | TAR at FAR 1e-3 | latency (1 thread, batch 1) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## Thresholds",
        "",
        "Cosine similarity thresholds at a false-accept rate of 1e-3 and 1e-4, measured on "
        f"{fp32['calibration']['pairs']:,} LFW pairs: View 2's same pairs and "
        f"{fp32['calibration']['different_pairs']:,} random pairs of different people among "
        "its images (seed 0). LFW is a benchmark of celebrity photos; recalibrate on photos "
        "like yours before relying on an operating point (`mobileface eval --calibrate`).",
        "",
        "| file | FAR 1e-3 | TAR there | FAR 1e-4 | TAR there |",
        "|---|---|---|---|---|",
    ]
    for card in cards.values():
        t, tar = card["thresholds"], card["calibration"]["tar"]
        lines.append(
            f"| `{card['file']['onnx']}` | {t.get('far_1e-3', float('nan')):.4f} | "
            f"{_pct(tar.get('far_1e-3'))} | {t.get('far_1e-4', float('nan')):.4f} | "
            f"{_pct(tar.get('far_1e-4'))} |"
        )
    verify = {k: speed_ms[k]["verify_ms"] for k in ("fp32", "int8")}
    lines += [
        "",
        "## Speed",
        "",
        f"ONNX Runtime, 1 thread, on {base['cpu']['model']} "
        f"({'with' if base['cpu']['avx512_vnni'] else 'without'} AVX-512 VNNI). "
        "End-to-end verify of two 250x250 LFW photos as `mobileface verify` runs it (search "
        "on copies shrunk to 160 then 480 px, YuNet's own points; decode, detect, align, embed "
        "both, compare), OpenCV on 1 thread, "
        "median over 7 interleaved rounds of 10 runs:",
        "",
        "| file | total | decode | detect | align | embed |",
        "|---|---|---|---|---|---|",
    ]
    for label, v in verify.items():
        lines.append(
            f"| {label} | {v['total']:.1f} ms | {v['decode']:.1f} | {v['detect']:.1f} | "
            f"{v['align']:.1f} | {v['embed']:.1f} |"
        )
    lines += [
        "",
        "## Training",
        "",
        f"Recipe: [`{training['config']}`](../../../{training['config']}) "
        f"({stage_steps} steps of {training['recipe']['optim']['batch_size']}, "
        f"{training['images_seen']:,} images seen). Data: the training sets of `../shared/data` "
        "(CelebA test-partition and in-the-wild crops, CelebA `img_align_celeba` crops aligned "
        "by `mobileface align`, Pinterest celebrity crops with LFW's people removed); never "
        "LFW. Loss: ArcFace (s=64, m=0.5) and embedding distillation (cosine to the teacher's "
        "embedding through a learned projection), stage by stage:",
        "",
        "| stage | architecture | steps | loss | teacher |",
        "|---|---|---|---|---|",
        *[
            f"| {i} | `{stage['architecture']}` | {stage['steps']:,} | "
            f"{stage.get('loss', 'arcface margin + distillation (cached per crop)')} | "
            f"{stage.get('teacher')} |"
            for i, stage in enumerate(training["stages"], 1)
        ],
        "",
        "Cached per crop: the teacher's embeddings of every training crop and of its mirror "
        "image are computed once, and a mirrored training crop is pulled towards the teacher's "
        "view of the mirrored crop. On each augmented crop (`distill.online`): the teacher "
        "embeds each crop exactly as the student sees it, augmentation included. "
        "LFW View 1 (development) during the last stage: "
        + (
            ", ".join(
                f"{100 * c['eval/accuracy']:.1f} % at step {c['step']:,}"
                for c in training["view1_checks"]
                if "eval/accuracy" in c
            )
            or "not measured"
        )
        + ".",
        "",
        "## Licence",
        "",
        base["licence"],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="final training checkpoint (model.pt)")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "configs/mobilefacenet_relu_openvino_stage4.yaml"
    )
    parser.add_argument("--name", default="mobilefacenet")
    parser.add_argument("--out", type=Path, default=ROOT / "src/mobileface/weights")
    parser.add_argument("--lfw", type=Path, default=SHARED / "data/lfw")
    parser.add_argument("--calib", type=Path, default=SHARED / "data/celeba-test-112")
    parser.add_argument("--peer", type=Path, default=SHARED / "peers/mobilefacenet-peer.onnx")
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="leave the teacher and dlib's ResNet out of the table",
    )
    parser.add_argument(
        "--no-dlib",
        action="store_true",
        help="leave dlib's ResNet out of the table (it takes about 25 min on 2 cores)",
    )
    parser.add_argument("--different", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    from mobileface.evaluation.pipeline import EmbedOptions
    from mobileface.export.onnx import update_metadata

    start = time.perf_counter()
    training = training_record(args.checkpoint, args.config)  # before the long work: fail fast
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exported = export(args.checkpoint, folder, args.calib)
        print(f"exported: fp32 {exported['size_mb']} MB, int8 {exported['int8']['size_mb']} MB")
        models = {"fp32": folder / "fp32.onnx", "int8": folder / "int8.onnx"}
        teacher = (training["recipe"].get("distill") or {}).get("teacher")
        if not args.no_references:
            if teacher and teacher != "dlib":
                from mobileface.train.config import load_config

                models["teacher"] = Path(load_config(args.config).distill.teacher)
            if not args.no_dlib:
                models["dlib"] = "dlib"
        if args.peer.is_file():
            models["peer"] = args.peer
        policy = EmbedOptions().policy  # the default pipeline's face policy
        pair_set, no_face = aligned_pair_set(args.lfw, args.workers, policy)
        calib_pairs = calibration_pairs(pair_set, args.different)
        results = evaluate(models, pair_set, calib_pairs)
        speed_ms = speed(models, args.lfw)

        base = {
            "architecture": training["stages"][-1]["architecture"],  # the checkpoint's own
            "input_size": [112, 112],
            "embedding_size": 128,
            "normalization": {"mean": 127.5, "std": 128.0, "channels": "RGB"},
            "training": training,
            "licence": licence(training["teachers"]),
            "lfw_policy": policy,
            "cpu": cpu_description(),
            "lfw_pairs": len(pair_set),
            "lfw_images": len(pair_set.sources),
            "lfw_no_face": len(no_face),
            "export": exported,
            "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "measured_by": "python scripts/build_weights.py " + " ".join(sys.argv[1:]),
            "peer_lfw_view2": results.get("peer", {}).get("metrics"),
            "references_lfw_view2": {
                label: results[label]["metrics"]
                for label in ("teacher", "dlib", "peer")
                if label in results
            },
        }
        args.out.mkdir(parents=True, exist_ok=True)
        cards = {}
        for label, suffix in (("fp32", ""), ("int8", "_int8")):
            thresholds = results[label]["calibration"]["thresholds"]
            update_metadata(models[label], {"thresholds": thresholds})
            target = args.out / f"{args.name}{suffix}.onnx"
            shutil.copyfile(models[label], target)
            cards[label] = write_card(
                target.with_suffix(".json"),
                f"{args.name}{suffix}",
                target,
                base,
                results[label],
                speed_ms[label],
                precision=label,
            )
        text = markdown(args.name, cards, results, speed_ms, base)
        (args.out / f"{args.name}.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
