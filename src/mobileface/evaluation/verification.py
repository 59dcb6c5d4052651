"""The pair verification pipeline: embed each unique image once, score pairs, measure.

Scores are cosine similarities of L2-normalised embeddings (see :mod:`.pipeline` for crops,
flip augmentation and the no-face fallback). A pair with an *unreadable* image (missing after
listing, corrupt, undecodable) cannot be scored; it is kept and given the lowest possible
score, -1, so it counts as a non-match (a same pair becomes a false reject, a different pair a
correct reject), and the number of such pairs is reported. Images where no face was found are
embedded from the fallback centre crop and counted. Nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobileface.errors import DataFormatError

from .cache import EmbeddingCache
from .metrics import (
    DEFAULT_FARS,
    VerificationMetrics,
    contiguous_folds,
    verification_metrics,
)
from .pipeline import NO_FACE, OK, UNREADABLE, Embeddings, EmbedOptions, ImageSource, embed_images
from .pose import YAW_THRESHOLD, estimate_yaw, pose_split_eer

UNSCORABLE = -1.0


@dataclass
class PairSet:
    """Pairs as indices into a list of unique images, with labels and fold indices."""

    sources: list[ImageSource]
    index_a: np.ndarray
    index_b: np.ndarray
    same: np.ndarray
    folds: np.ndarray | None
    name: str
    folds_from: str

    def __len__(self) -> int:
        return int(self.same.size)


def pairs_from_list(pairs: Sequence[Any], images_dir: str | Path, name: str = "") -> PairSet:
    """A :class:`PairSet` from :func:`mobileface.data.pairs.read_pairs` output."""
    if not pairs:
        raise DataFormatError(f"{name or 'the pair list'}: no pairs")
    root = Path(images_dir)
    index: dict[Path, int] = {}
    sources: list[ImageSource] = []

    def idx(path: Path) -> int:
        path = Path(path)
        if path not in index:
            index[path] = len(sources)
            try:
                label = str(path.relative_to(root))
            except ValueError:
                label = str(path)
            sources.append(ImageSource(label, path=path))
        return index[path]

    a = np.array([idx(p.image_a) for p in pairs], dtype=np.int64)
    b = np.array([idx(p.image_b) for p in pairs], dtype=np.int64)
    same = np.array([bool(p.same) for p in pairs], dtype=bool)
    folds = np.array([int(getattr(p, "fold", 0)) for p in pairs], dtype=np.int64)
    has_folds = np.unique(folds).size >= 2
    return PairSet(
        sources,
        a,
        b,
        same,
        folds if has_folds else None,
        name,
        "pair file" if has_folds else "10 stratified folds (the pair file has none)",
    )


def pairs_from_bin(path: str | Path) -> PairSet:
    """A :class:`PairSet` from an InsightFace .bin set: images 2i and 2i+1 form pair i, already
    aligned; folds are 10 contiguous blocks of pairs, as InsightFace's evaluation code has it."""
    from mobileface.data.verification_bin import read_bin

    images, issame = read_bin(path)
    same = np.asarray(issame, dtype=bool).ravel()
    if len(images) != 2 * same.size:
        raise DataFormatError(f"{path}: {len(images)} images for {same.size} pairs")
    sources = [ImageSource(f"{Path(path).name}#{i}", data=img) for i, img in enumerate(images)]
    n = same.size
    return PairSet(
        sources,
        np.arange(n) * 2,
        np.arange(n) * 2 + 1,
        same,
        contiguous_folds(n, 10),
        Path(path).name,
        "10 contiguous blocks (InsightFace .bin)",
    )


def score_pairs(embeddings: Embeddings, index_a: np.ndarray, index_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair; :data:`UNSCORABLE` where either image is unreadable."""
    v = embeddings.vectors
    scores = np.einsum("ij,ij->i", v[index_a], v[index_b]).astype(np.float64)
    bad = np.array([s == UNREADABLE for s in embeddings.status], dtype=bool)
    unscorable = bad[index_a] | bad[index_b]
    scores[unscorable] = UNSCORABLE
    return np.clip(scores, -1.0, 1.0)


@dataclass
class VerificationRun:
    """One model on one pair set: scores, metrics, and what happened to the images."""

    model: str
    pair_set: PairSet
    scores: np.ndarray
    metrics: VerificationMetrics
    embeddings: Embeddings
    unscorable_pairs: int
    options: EmbedOptions
    pose: dict[str, Any] | None = None

    def failures(self) -> dict[str, str]:
        return dict(sorted(self.embeddings.reasons.items()))

    def to_dict(self) -> dict[str, Any]:
        e = self.embeddings
        out: dict[str, Any] = {"model": self.model, "dataset": self.pair_set.name}
        out.update(self.metrics.to_dict())
        out.update(
            {
                "folds_from": self.pair_set.folds_from,
                "images": len(e.status),
                "failed_images": e.failed,
                "no_face_images": e.count(NO_FACE),
                "unreadable_images": e.count(UNREADABLE),
                "unscorable_pairs": self.unscorable_pairs,
                "failed": self.failures(),
                "embedded_images": e.embedded,
                "cached_images": e.from_cache,
                "aligned": self.options.aligned,
                "flip": self.options.flip,
                "crop_norm": self.options.crop_norm,
            }
        )
        if not self.options.aligned:
            out["detector"] = self.options.detector
            out["policy"] = self.options.policy
            out["detector_options"] = self.options.detector_options()
        if self.pose is not None:
            out["pose"] = self.pose
        return out


def evaluate_verification(
    pair_set: PairSet,
    embedder: Any,
    options: EmbedOptions,
    *,
    model_key: Any,
    model_name: str = "",
    cache: EmbeddingCache | None = None,
    detector: Any = None,
    fars: Iterable[float] = DEFAULT_FARS,
    pose: bool = False,
    yaw_threshold: float = YAW_THRESHOLD,
    progress: bool | None = None,
) -> VerificationRun:
    """Embed ``pair_set``'s images with ``embedder``, score the pairs and measure them."""
    embeddings = embed_images(
        pair_set.sources,
        embedder,
        options,
        model_key=model_key,
        cache=cache,
        detector=detector,
        progress=progress,
        describe=f"embedding {pair_set.name}".strip(),
    )
    scores = score_pairs(embeddings, pair_set.index_a, pair_set.index_b)
    bad = np.array([s == UNREADABLE for s in embeddings.status], dtype=bool)
    unscorable = int((bad[pair_set.index_a] | bad[pair_set.index_b]).sum())
    metrics = verification_metrics(scores, pair_set.same, pair_set.folds, fars)
    pose_out = None
    if pose:
        yaw = estimate_yaw(embeddings.landmarks.astype(np.float64))
        bins, unknown = pose_split_eer(
            scores, pair_set.same, yaw[pair_set.index_a], yaw[pair_set.index_b], yaw_threshold
        )
        known = yaw[np.isfinite(yaw)]
        pose_out = {
            "yaw_threshold": yaw_threshold,
            "method": "nose offset from the eye-mouth midline, 5 landmarks",
            "images_with_yaw": int(known.size),
            "profile_images": int((np.abs(known) >= yaw_threshold).sum()),
            "pairs_without_pose": unknown,
            "bins": {b.name: b.to_dict() for b in bins},
        }
    return VerificationRun(
        model=model_name or str(getattr(embedder, "name", "model")),
        pair_set=pair_set,
        scores=scores,
        metrics=metrics,
        embeddings=embeddings,
        unscorable_pairs=unscorable,
        options=options,
        pose=pose_out,
    )


__all__ = [
    "OK",
    "NO_FACE",
    "UNREADABLE",
    "PairSet",
    "VerificationRun",
    "evaluate_verification",
    "pairs_from_bin",
    "pairs_from_list",
    "score_pairs",
]
