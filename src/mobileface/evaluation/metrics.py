"""Verification metrics on similarity scores (NumPy only).

Conventions used throughout:

* ``scores`` are similarities: higher means "more likely the same person".
* ``same`` is a boolean array: True for a genuine (same-person) pair.
* A pair is **accepted** at threshold ``t`` when ``score >= t``.
* FAR (false accept rate, FMR) = accepted different pairs / different pairs;
  TAR (true accept rate) = accepted same pairs / same pairs; FRR = 1 - TAR.

**How many different pairs a FAR needs.** An empirical FAR is a count of false accepts over
``n_diff`` different pairs, so it moves in steps of ``1 / n_diff``. A target FAR ``f`` is
*supported* only when ``n_diff * f >= 1`` (at least one false accept is possible at exactly
that rate); below that, every threshold above the top impostor score gives FAR 0 and the
figure would be an artefact of the sample, so :func:`tar_at_far` reports ``None`` and says
why. LFW View 2 (3,000 different pairs) supports FAR 1e-1, 1e-2 and 1e-3 but not 1e-4.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mobileface.errors import DataFormatError

DEFAULT_FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)


class Roc(NamedTuple):
    """An ROC curve: one point per distinct threshold, from "accept nothing" to "accept all".

    ``thresholds[0]`` is ``+inf`` (the point FAR = TAR = 0); the others are the distinct
    scores in decreasing order, so ``far`` and ``tar`` are non-decreasing.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray


def _check(scores: Sequence[float] | np.ndarray, same: Sequence[bool] | np.ndarray):
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(same).ravel()
    if s.shape != y.shape:
        raise DataFormatError(f"{s.size} scores but {y.size} labels")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise DataFormatError("labels must be booleans (or 0/1)")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise DataFormatError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    return s, y


def _need_both(y: np.ndarray, what: str) -> None:
    if not y.any() or y.all():
        raise DataFormatError(f"{what} needs both same and different pairs")


def roc_curve(scores, same) -> Roc:
    """FAR and TAR at every distinct threshold (ties handled as one step, like scikit-learn)."""
    s, y = _check(scores, same)
    _need_both(y, "an ROC curve")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # Last index of each run of equal scores: the curve moves once per distinct score.
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    far = np.r_[0.0, fp / (~y).sum()]
    tar = np.r_[0.0, tp / y.sum()]
    thresholds = np.r_[np.inf, s[last]]
    return Roc(far, tar, thresholds)


def auc(scores, same) -> float:
    """Area under the ROC curve (trapezoids; ties count half, as in the Mann-Whitney U)."""
    roc = roc_curve(scores, same)
    return float(np.sum(np.diff(roc.far) * (roc.tar[1:] + roc.tar[:-1]) / 2.0))


@dataclass(frozen=True)
class Eer:
    """Equal error rate and the threshold where FAR and FRR meet."""

    eer: float
    threshold: float


def eer(scores, same) -> Eer:
    """The equal error rate: where FAR = FRR on the ROC curve.

    The ROC curve is taken as piecewise linear between its points; the EER is where it crosses
    the line TAR = 1 - FAR, found exactly on the segment that straddles it. The threshold is
    interpolated linearly in score on that segment (an endpoint's score where the other end is
    the "accept nothing" point at ``+inf``).
    """
    far, tar, thr = roc_curve(scores, same)
    gap = far - (1.0 - tar)  # FAR - FRR: -1 at the first point, +1 at the last; non-decreasing
    i = int(np.searchsorted(gap, 0.0, side="left"))  # first point with FAR >= FRR
    if gap[i] == 0.0 or i == 0:
        return Eer(float(far[i]), float(thr[i]))
    g0, g1 = gap[i - 1], gap[i]
    w = -g0 / (g1 - g0)  # fraction of the way from point i-1 to point i
    value = far[i - 1] + w * (far[i] - far[i - 1])
    t0, t1 = thr[i - 1], thr[i]
    threshold = t1 if not np.isfinite(t0) else t0 + w * (t1 - t0)
    return Eer(float(value), float(threshold))


@dataclass(frozen=True)
class TarAtFar:
    """TAR at a target FAR; ``tar`` and ``threshold`` are None where it is not supported."""

    far: float
    tar: float | None
    threshold: float | None
    achieved_far: float | None
    reason: str | None = None


def far_key(far: float) -> str:
    """The text form used as a JSON key: ``0.001`` (positional, never ``1e-03``)."""
    return np.format_float_positional(float(far), trim="-")


def supports_far(n_different: int, far: float) -> bool:
    """Whether ``n_different`` different pairs can measure ``far`` (``n_different * far >= 1``)."""
    return n_different * far >= 1.0 - 1e-9


def tar_at_far(scores, same, fars: Iterable[float] = DEFAULT_FARS) -> list[TarAtFar]:
    """TAR at each target FAR, at the lowest threshold whose empirical FAR does not exceed it.

    Where there are too few different pairs for a target (see the module docstring), the entry
    has ``tar=None`` and a ``reason``.
    """
    roc = roc_curve(scores, same)
    _, y = _check(scores, same)
    n_diff = int((~y).sum())
    out = []
    for f in fars:
        f = float(f)
        if not 0.0 < f < 1.0:
            raise DataFormatError(f"target FAR {f} is not between 0 and 1")
        if not supports_far(n_diff, f):
            need = int(np.ceil(1.0 / f - 1e-9))
            reason = f"needs at least {need:,} different pairs, have {n_diff:,}"
            out.append(TarAtFar(f, None, None, None, reason))
            continue
        i = int(np.searchsorted(roc.far, f + 1e-12, side="right")) - 1  # last point FAR <= f
        out.append(TarAtFar(f, float(roc.tar[i]), float(roc.thresholds[i]), float(roc.far[i])))
    return out


def accuracy_at(scores, same, threshold: float) -> float:
    """Fraction of pairs decided correctly when accepting ``score >= threshold``."""
    s, y = _check(scores, same)
    return float(np.mean((s >= threshold) == y))


def best_threshold(scores, same) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Candidates are the midpoints between consecutive distinct scores, the lowest score (accept
    everything) and just above the highest (reject everything), so the choice is exact rather
    than on a grid. Where several candidates tie, the middle one of them (lower median, in
    increasing order) is taken, so the choice is not biased towards accepting or rejecting.
    """
    s, y = _check(scores, same)
    if s.size == 0:
        raise DataFormatError("no pairs to choose a threshold on")
    u = np.unique(s)
    candidates = np.r_[u[0], (u[:-1] + u[1:]) / 2.0, np.nextafter(u[-1], np.inf)]
    # Accuracy at each candidate t: same pairs with s >= t plus different pairs with s < t.
    order = np.sort(s[y])
    order_diff = np.sort(s[~y])
    accepted_same = order.size - np.searchsorted(order, candidates, side="left")
    rejected_diff = np.searchsorted(order_diff, candidates, side="left")
    correct = accepted_same + rejected_diff
    best = np.flatnonzero(correct == correct.max())
    pick = best[(best.size - 1) // 2]
    return float(candidates[pick]), float(correct[pick] / s.size)


@dataclass(frozen=True)
class KFoldResult:
    """The LFW protocol's figure: mean and standard deviation of the per-fold accuracies."""

    mean: float
    std: float
    thresholds: list[float]
    accuracies: list[float]
    folds: list[int]


def kfold_accuracy(scores, same, folds) -> KFoldResult:
    """The LFW 10-fold protocol: for each fold, the best threshold on the other folds' pairs
    (:func:`best_threshold`), then the accuracy on this fold at that threshold.

    ``folds`` gives each pair's fold index (from the pair file). The standard deviation is the
    population one (``ddof=0``), as in the usual LFW reporting code. Returns ``(mean, std,
    thresholds, ...)`` as a :class:`KFoldResult`.
    """
    s, y = _check(scores, same)
    f = np.asarray(folds).ravel()
    if f.shape != s.shape:
        raise DataFormatError(f"{s.size} scores but {f.size} fold indices")
    ids = np.unique(f)
    if ids.size < 2:
        raise DataFormatError("the k-fold protocol needs at least two folds")
    thresholds, accuracies = [], []
    for k in ids:
        test = f == k
        t, _ = best_threshold(s[~test], y[~test])
        thresholds.append(t)
        accuracies.append(float(np.mean((s[test] >= t) == y[test])))
    acc = np.asarray(accuracies)
    return KFoldResult(
        float(acc.mean()), float(acc.std()), thresholds, accuracies, [int(k) for k in ids]
    )


def contiguous_folds(n: int, k: int = 10) -> np.ndarray:
    """Fold index of each of ``n`` pairs in ``k`` contiguous blocks (InsightFace's .bin sets)."""
    if n < k:
        raise DataFormatError(f"{n} pairs cannot make {k} folds")
    return (np.arange(n) * k) // n


def stratified_folds(same, k: int = 10) -> np.ndarray:
    """Fold index dealing same and different pairs round-robin into ``k`` folds, in order.

    For pair lists without folds (LFW View 1, for instance), where same pairs come first.
    """
    y = np.asarray(same, dtype=bool).ravel()
    out = np.empty(y.size, dtype=np.int64)
    for label in (True, False):
        idx = np.flatnonzero(y == label)
        out[idx] = np.arange(idx.size) % k
    return out


@dataclass(frozen=True)
class VerificationMetrics:
    """Every figure of the verification protocol for one set of scored pairs."""

    pairs: int
    same_pairs: int
    different_pairs: int
    accuracy: float
    accuracy_std: float
    fold_thresholds: list[float]
    fold_accuracies: list[float]
    auc: float
    eer: float
    eer_threshold: float
    threshold: float
    threshold_accuracy: float
    tar_at_far: list[TarAtFar]

    def to_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "same_pairs": self.same_pairs,
            "different_pairs": self.different_pairs,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "fold_accuracies": self.fold_accuracies,
            "fold_thresholds": self.fold_thresholds,
            "auc": self.auc,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "threshold": self.threshold,
            "threshold_accuracy": self.threshold_accuracy,
            "tar_at_far": {far_key(t.far): t.tar for t in self.tar_at_far},
            "tar_at_far_threshold": {far_key(t.far): t.threshold for t in self.tar_at_far},
            "tar_at_far_unsupported": {
                far_key(t.far): t.reason for t in self.tar_at_far if t.reason
            },
        }


def verification_metrics(
    scores, same, folds=None, fars: Iterable[float] = DEFAULT_FARS
) -> VerificationMetrics:
    """The k-fold accuracy (folds from ``folds``, else 10 stratified ones) and the figures over
    all pairs: AUC, EER, TAR at each FAR, and the best single threshold."""
    s, y = _check(scores, same)
    _need_both(y, "verification metrics")
    if folds is None or np.unique(np.asarray(folds)).size < 2:
        folds = stratified_folds(y, k=min(10, int(y.sum()), int((~y).sum())))
    kf = kfold_accuracy(s, y, folds)
    e = eer(s, y)
    t, t_acc = best_threshold(s, y)
    return VerificationMetrics(
        pairs=int(s.size),
        same_pairs=int(y.sum()),
        different_pairs=int((~y).sum()),
        accuracy=kf.mean,
        accuracy_std=kf.std,
        fold_thresholds=kf.thresholds,
        fold_accuracies=kf.accuracies,
        auc=auc(s, y),
        eer=e.eer,
        eer_threshold=e.threshold,
        threshold=t,
        threshold_accuracy=t_acc,
        tar_at_far=tar_at_far(s, y, fars),
    )
