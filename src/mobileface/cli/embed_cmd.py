"""``mobileface embed``: face embeddings of photos (or aligned crops) into a ``.npy`` file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mobileface.cli.verify_cmd import add_model_arguments, open_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed the face of each photo into an N x D .npy file",
        description=(
            "For each image: detect the face (--policy picks one), align it, embed it. Writes "
            "an N x D float32 array of L2-normalised embeddings, one row per image in the "
            "order given (--raw: not normalised), and OUT.json listing the images, their "
            "faces and the model. An image without a face is an error unless --skip-missing "
            "(its row is then NaN). With --aligned the images are taken as aligned crops."
        ),
    )
    parser.add_argument("images", metavar="IMG", nargs="+", help="photos (or crops)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE.npy", help="output array")
    parser.add_argument("--aligned", action="store_true", help="images are aligned crops")
    parser.add_argument("--raw", action="store_true", help="do not L2-normalise")
    parser.add_argument("--skip-missing", action="store_true", help="NaN row for faceless images")
    parser.add_argument("--batch", type=int, default=32, help="crops per inference call")
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mobileface.errors import ImageError, NoFaceError
    from mobileface.runtime import FaceVerifier, l2_normalize

    embedder = open_model(args)
    verifier = FaceVerifier(embedder, detector=None if args.aligned else _detector(args))
    crops, rows, records = [], [], []
    for i, path in enumerate(args.images):
        record: dict = {"image": path}
        try:
            image = verifier.load(path, path)
            if args.aligned:
                crop = image
                if crop.shape[:2] != tuple(embedder.input_size):
                    h, w = embedder.input_size
                    raise ImageError(
                        f"{path}: a {crop.shape[0]}x{crop.shape[1]} image is not an aligned "
                        f"{h}x{w} crop (drop --aligned to detect and align it)"
                    )
            else:
                face = verifier.find_face(image, path)
                crop = verifier.align(image, face)
                record["face"] = face.to_dict()
        except (NoFaceError, ImageError) as exc:
            if not args.skip_missing:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            record["error"] = str(exc)
            records.append(record)
            continue
        crops.append(crop)
        rows.append(i)
        records.append(record)
    out = np.full((len(args.images), embedder.embedding_size), np.nan, dtype=np.float32)
    for start in range(0, len(crops), max(1, args.batch)):
        chunk = crops[start : start + args.batch]
        vectors = embedder.embed(chunk)
        out[rows[start : start + len(chunk)]] = vectors if args.raw else l2_normalize(vectors)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(
        json.dumps(
            {
                "model": embedder.name,
                "embedding_size": embedder.embedding_size,
                "normalized": not args.raw,
                "images": records,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    missing = len(args.images) - len(rows)
    print(
        f"wrote {path}: {len(rows)} x {embedder.embedding_size} embeddings"
        + (f" ({missing} images without a face: NaN rows)" if missing else "")
        + f"; index in {sidecar}"
    )
    return 0


def _detector(args: argparse.Namespace):
    from mobileface.align import create_detector

    return create_detector(args.detector)
