"""Identification (1:N) metrics: closed-set CMC and rank-k, open-set TPIR at FPIR.

Vocabulary (as in NIST's face identification reports and MegaFace):

* The **gallery** holds enrolled identities; each identity is one template, the L2-normalised
  mean of its images' L2-normalised embeddings (:func:`build_templates`). **Distractors** are
  extra gallery entries of people who are never searched for (MegaFace-style); each distractor
  image is its own identity.
* A **mated** probe's identity is in the gallery; a **non-mated** probe's is not.
* **Rank** of a mated probe: 1 + the number of other gallery entries scoring at least as high as
  its own identity (ties counted against it, so constant scores never look perfect).
  **CMC(k)** is the fraction of mated probes with rank <= k; rank-1 and rank-5 are two of its
  points (closed set: only mated probes count).
* **Open set** at threshold ``t``: FPIR(t) is the fraction of non-mated probes whose best gallery
  score is >= t (a false alarm); TPIR(t) is the fraction of mated probes whose best gallery entry
  is their own identity *and* scores >= t. TPIR at a target FPIR uses the lowest threshold whose
  FPIR does not exceed it; as for FAR, a target ``f`` needs ``n_nonmated * f >= 1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mobileface.errors import DataFormatError

from .metrics import far_key, supports_far

DEFAULT_FPIRS: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
_BLOCK = 1024


def l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def build_templates(
    embeddings: np.ndarray, identities: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """One L2-normalised template per identity (mean of normalised embeddings), names sorted."""
    emb = l2_normalize_rows(embeddings)
    ids = np.asarray(list(identities), dtype=object)
    if ids.size != emb.shape[0]:
        raise DataFormatError(f"{emb.shape[0]} embeddings but {ids.size} identity labels")
    names = sorted(set(ids.tolist()))
    templates = np.stack([emb[ids == n].mean(axis=0) for n in names]) if names else emb[:0]
    return l2_normalize_rows(templates), names


def ranks(scores: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """Rank of each probe's true gallery column in its row of ``scores`` (probes x gallery)."""
    s = np.asarray(scores, dtype=np.float64)
    idx = np.asarray(true_index, dtype=np.int64)
    own = s[np.arange(s.shape[0]), idx]
    return (s >= own[:, None]).sum(axis=1)  # includes itself: 1 + others scoring >= own


def cmc_curve(rank: np.ndarray, max_rank: int) -> np.ndarray:
    """CMC(k) for k = 1..max_rank: fraction of probes with rank <= k."""
    r = np.asarray(rank)
    if r.size == 0:
        return np.full(max_rank, np.nan)
    return np.array([(r <= k).mean() for k in range(1, max_rank + 1)], dtype=np.float64)


@dataclass(frozen=True)
class TpirAtFpir:
    fpir: float
    tpir: float | None
    threshold: float | None
    reason: str | None = None


def tpir_at_fpir(
    mated_scores,
    mated_correct,
    nonmated_scores,
    fpirs: Iterable[float] = DEFAULT_FPIRS,
) -> list[TpirAtFpir]:
    """Open-set TPIR at each target FPIR.

    ``mated_scores``: each mated probe's best gallery score; ``mated_correct``: whether that best
    entry is its own identity; ``nonmated_scores``: each non-mated probe's best gallery score.
    """
    m = np.asarray(mated_scores, dtype=np.float64)
    ok = np.asarray(mated_correct, dtype=bool)
    nm = np.sort(np.asarray(nonmated_scores, dtype=np.float64))
    out = []
    for f in fpirs:
        f = float(f)
        if m.size == 0:
            out.append(TpirAtFpir(f, None, None, "no mated probes"))
            continue
        if not supports_far(nm.size, f):
            need = int(np.ceil(1.0 / f - 1e-9))
            reason = f"needs at least {need:,} non-mated probes, have {nm.size:,}"
            out.append(TpirAtFpir(f, None, None, reason))
            continue
        candidates = np.r_[np.unique(np.r_[nm, m]), np.inf]
        fpir = (nm.size - np.searchsorted(nm, candidates, side="left")) / nm.size
        t = float(candidates[fpir <= f + 1e-12].min())
        tpir = float(np.mean(ok & (m >= t)))
        out.append(TpirAtFpir(f, tpir, t if np.isfinite(t) else None))
    return out


@dataclass(frozen=True)
class IdentificationMetrics:
    probes: int
    mated_probes: int
    nonmated_probes: int
    gallery_identities: int
    distractors: int
    rank1: float | None
    rank5: float | None
    cmc: list[float]
    tpir_at_fpir: list[TpirAtFpir]

    def to_dict(self) -> dict:
        return {
            "probes": self.probes,
            "mated_probes": self.mated_probes,
            "nonmated_probes": self.nonmated_probes,
            "gallery_identities": self.gallery_identities,
            "distractors": self.distractors,
            "rank1": self.rank1,
            "rank5": self.rank5,
            "cmc": self.cmc,
            "tpir_at_fpir": {far_key(t.fpir): t.tpir for t in self.tpir_at_fpir},
            "tpir_at_fpir_threshold": {far_key(t.fpir): t.threshold for t in self.tpir_at_fpir},
            "tpir_at_fpir_unsupported": {
                far_key(t.fpir): t.reason for t in self.tpir_at_fpir if t.reason
            },
        }


def identification_metrics(
    probe_embeddings: np.ndarray,
    probe_identities: Sequence[str],
    gallery_embeddings: np.ndarray,
    gallery_identities: Sequence[str],
    distractor_embeddings: np.ndarray | None = None,
    *,
    max_rank: int = 20,
    fpirs: Iterable[float] = DEFAULT_FPIRS,
) -> IdentificationMetrics:
    """Search every probe against the gallery templates (plus distractors) by cosine similarity."""
    templates, names = build_templates(gallery_embeddings, gallery_identities)
    if not names:
        raise DataFormatError("the gallery is empty")
    n_distractors = 0
    if distractor_embeddings is not None and len(distractor_embeddings):
        distractors = l2_normalize_rows(distractor_embeddings)
        n_distractors = distractors.shape[0]
        templates = np.concatenate([templates, distractors])
    probes = l2_normalize_rows(probe_embeddings)
    pids = list(probe_identities)
    if len(pids) != probes.shape[0]:
        raise DataFormatError(f"{probes.shape[0]} probe embeddings but {len(pids)} labels")
    column = {n: i for i, n in enumerate(names)}
    mated = np.array([p in column for p in pids], dtype=bool)
    true_idx = np.array([column.get(p, 0) for p in pids], dtype=np.int64)
    # Search in blocks of probes so that memory stays bounded with many distractors.
    top = np.empty(len(pids), dtype=np.float64)
    rank = np.empty(len(pids), dtype=np.int64)
    for start in range(0, len(pids), _BLOCK):
        stop = min(start + _BLOCK, len(pids))
        block = (probes[start:stop] @ templates.T).astype(np.float64)
        top[start:stop] = block.max(axis=1)
        rank[start:stop] = ranks(block, true_idx[start:stop])
    max_rank = max(1, min(max_rank, templates.shape[0]))
    r = rank[mated]
    cmc = cmc_curve(r, max_rank) if r.size else np.array([])
    rank1 = float(cmc[0]) if r.size else None
    rank5 = float(cmc[4]) if r.size and max_rank >= 5 else None
    correct = r == 1
    tpir = tpir_at_fpir(top[mated], correct, top[~mated], fpirs)
    return IdentificationMetrics(
        probes=len(pids),
        mated_probes=int(mated.sum()),
        nonmated_probes=int((~mated).sum()),
        gallery_identities=len(names),
        distractors=n_distractors,
        rank1=rank1,
        rank5=rank5,
        cmc=[float(c) for c in cmc],
        tpir_at_fpir=tpir,
    )


@dataclass
class IdentificationRun:
    """One model on one gallery/probe split, with what happened to the images."""

    model: str
    metrics: IdentificationMetrics
    failed: dict[str, str]
    failed_images: int
    embedded_images: int
    cached_images: int
    unusable_probes: int
    details: dict

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            **self.metrics.to_dict(),
            "failed_images": self.failed_images,
            "failed": dict(sorted(self.failed.items())),
            "unusable_probes": self.unusable_probes,
            "embedded_images": self.embedded_images,
            "cached_images": self.cached_images,
            **self.details,
        }


def evaluate_identification(
    gallery: Sequence[tuple],
    probes: Sequence[tuple],
    embedder,
    options,
    *,
    model_key,
    model_name: str = "",
    distractors: Sequence = (),
    cache=None,
    detector=None,
    max_rank: int = 20,
    fpirs: Iterable[float] = DEFAULT_FPIRS,
    progress: bool | None = None,
) -> IdentificationRun:
    """Embed gallery, probe and distractor images (``(ImageSource, identity)`` pairs; plain
    sources for distractors) and search. Unreadable gallery images are left out of their
    identity's template; an unreadable probe cannot be searched, so it is left out of the
    figures and reported (``unusable_probes``, ``failed``). Images without a face use the
    pipeline's fallback crop and are counted in ``failed_images``."""
    from .pipeline import UNREADABLE, embed_images

    sources = [s for s, _ in gallery] + [s for s, _ in probes] + list(distractors)
    emb = embed_images(
        sources,
        embedder,
        options,
        model_key=model_key,
        cache=cache,
        detector=detector,
        progress=progress,
        describe="embedding gallery, probes and distractors",
    )
    usable = np.array([s != UNREADABLE for s in emb.status], dtype=bool)
    g = slice(0, len(gallery))
    p = slice(len(gallery), len(gallery) + len(probes))
    d = slice(len(gallery) + len(probes), len(sources))
    g_ids = np.asarray([i for _, i in gallery], dtype=object)
    p_ids = np.asarray([i for _, i in probes], dtype=object)
    g_ok, p_ok = usable[g], usable[p]
    metrics = identification_metrics(
        emb.vectors[p][p_ok],
        p_ids[p_ok].tolist(),
        emb.vectors[g][g_ok],
        g_ids[g_ok].tolist(),
        emb.vectors[d][usable[d]],
        max_rank=max_rank,
        fpirs=fpirs,
    )
    return IdentificationRun(
        model=model_name or str(getattr(embedder, "name", "model")),
        metrics=metrics,
        failed=emb.reasons,
        failed_images=emb.failed,
        embedded_images=emb.embedded,
        cached_images=emb.from_cache,
        unusable_probes=int((~p_ok).sum()),
        details={"aligned": options.aligned, "flip": options.flip},
    )
