"""Verification metrics on synthetic scores whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mobileface.errors import DataFormatError
from mobileface.evaluation.metrics import (
    auc,
    best_threshold,
    contiguous_folds,
    eer,
    far_key,
    kfold_accuracy,
    roc_curve,
    stratified_folds,
    supports_far,
    tar_at_far,
    verification_metrics,
)


def labelled(pos, neg):
    scores = np.r_[np.asarray(pos, float), np.asarray(neg, float)]
    same = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    return scores, same


# --- perfectly separable, fully overlapping, known EER ----------------------------------------


def test_perfectly_separable_scores() -> None:
    rng = np.random.default_rng(1)
    s, y = labelled(rng.uniform(0.6, 1.0, 500), rng.uniform(-0.5, 0.4, 2000))
    assert auc(s, y) == 1.0
    e = eer(s, y)
    assert e.eer == 0.0
    assert s[~y].max() < e.threshold <= s[y].min()
    for t in tar_at_far(s, y, [1e-1, 1e-2, 1e-3]):
        assert t.tar == 1.0 and t.achieved_far <= t.far
    m = verification_metrics(s, y, stratified_folds(y))
    assert m.accuracy == 1.0 and m.accuracy_std == 0.0
    assert s[~y].max() < m.threshold < s[y].min()
    assert m.threshold_accuracy == 1.0


def test_fully_overlapping_scores() -> None:
    s, y = labelled(np.full(100, 0.3), np.full(300, 0.3))
    assert auc(s, y) == 0.5
    assert eer(s, y).eer == pytest.approx(0.5)
    assert eer(s, y).threshold == pytest.approx(0.3)
    # Same multiset of scores for both classes: the ROC is the diagonal.
    values = np.linspace(-1, 1, 200)
    s, y = labelled(values, values)
    assert auc(s, y) == pytest.approx(0.5)
    assert eer(s, y).eer == pytest.approx(0.5, abs=0.005)
    m = verification_metrics(s, y)
    assert m.accuracy <= 0.55


def test_eer_known_exactly() -> None:
    # Different pairs 0..9, same pairs 6.5..15.5: accepting scores >= 8 lets in 8 and 9 (FAR
    # 2/10) and turns away 6.5 and 7.5 (FRR 2/10).
    s, y = labelled(np.arange(10) + 6.5, np.arange(10.0))
    e = eer(s, y)
    assert e.eer == pytest.approx(0.2)
    assert e.threshold == pytest.approx(8.0)


def test_eer_interpolates_between_roc_points() -> None:
    # ROC points (0, .5), (.5, .5), (.5, 1), (1, 1): TAR = 1 - FAR is met at (.5, .5).
    s, y = labelled([0.5, 2.0], [0.0, 1.0])
    assert eer(s, y).eer == pytest.approx(0.5)
    # One same pair below one different pair out of two each: the curve crosses mid-segment.
    s, y = labelled([3.0, 1.0], [2.0, 0.0])
    e = eer(s, y)
    assert e.eer == pytest.approx(0.5)
    assert 1.0 <= e.threshold <= 3.0


def test_eer_of_gaussian_scores_matches_theory() -> None:
    rng = np.random.default_rng(2)
    d = 2.0  # same ~ N(d, 1), different ~ N(0, 1): EER = Phi(-d / 2)
    s, y = labelled(rng.normal(d, 1, 100_000), rng.normal(0, 1, 100_000))
    expected = 0.5 * math.erfc((d / 2) / math.sqrt(2))
    e = eer(s, y)
    assert e.eer == pytest.approx(expected, abs=0.004)
    assert e.threshold == pytest.approx(d / 2, abs=0.03)


# --- agreement with scikit-learn ---------------------------------------------------------------


def test_roc_and_auc_agree_with_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.random(3000) < 0.3
    s = np.round(rng.normal(y * 1.2, 1.0), 1)  # rounded: many ties
    roc = roc_curve(s, y)
    far, tar, thr = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(roc.far, far)
    np.testing.assert_allclose(roc.tar, tar)
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
    assert auc(s, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


def test_tar_at_far_is_a_point_of_scikit_learns_roc() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    y = rng.random(5000) < 0.5
    s = rng.normal(y * 2.0, 1.0)
    far, tar, _ = sk.roc_curve(y, s)
    for t in tar_at_far(s, y, [1e-1, 1e-2, 1e-3]):
        assert t.achieved_far <= t.far
        assert t.tar == pytest.approx(tar[far <= t.far].max())
        accepted = s >= t.threshold
        assert t.tar == pytest.approx(accepted[y].mean())
        assert t.achieved_far == pytest.approx(accepted[~y].mean())


# --- TAR at FAR and its support rule -----------------------------------------------------------


def test_tar_at_far_by_hand() -> None:
    # Different 0..9: FAR 0.1 allows one false accept (the 9). The lowest threshold that lets
    # in no other is the same pair at 8.5, so three of the four same pairs are accepted.
    s, y = labelled([9.5, 9.0, 8.5, 3.0], np.arange(10.0))
    (t,) = tar_at_far(s, y, [0.1])
    assert t.threshold == 8.5
    assert t.achieved_far == pytest.approx(0.1)
    assert t.tar == pytest.approx(0.75)


def test_far_needs_enough_different_pairs() -> None:
    assert supports_far(1000, 1e-3) and not supports_far(999, 1e-3)
    assert supports_far(3000, 1e-3) and not supports_far(3000, 1e-4)
    rng = np.random.default_rng(5)
    s, y = labelled(rng.normal(2, 1, 3000), rng.normal(0, 1, 3000))
    res = {far_key(t.far): t for t in tar_at_far(s, y, [1e-1, 1e-2, 1e-3, 1e-4])}
    assert all(res[k].tar is not None for k in ("0.1", "0.01", "0.001"))
    assert res["0.0001"].tar is None and res["0.0001"].threshold is None
    assert "10,000 different pairs" in res["0.0001"].reason
    assert "3,000" in res["0.0001"].reason


def test_far_keys_are_positional() -> None:
    assert [far_key(f) for f in (1e-1, 1e-2, 1e-3, 1e-4, 5e-5)] == [
        "0.1",
        "0.01",
        "0.001",
        "0.0001",
        "0.00005",
    ]
    with pytest.raises(DataFormatError):
        tar_at_far([1, 0], [True, False], [1.5])


# --- the LFW fold logic ------------------------------------------------------------------------


def test_kfold_two_folds_by_hand() -> None:
    # Fold 0: same 0.8, different 0.2. Fold 1: same 0.6, different 0.5.
    # Testing fold 0, the threshold comes from fold 1: midway between 0.5 and 0.6 = 0.55;
    # fold 0 is then all right (1.0). Testing fold 1, the threshold from fold 0 is 0.5, and
    # its different pair at exactly 0.5 is accepted (accept when score >= threshold): 0.5.
    scores = [0.8, 0.2, 0.6, 0.5]
    same = [True, False, True, False]
    r = kfold_accuracy(scores, same, [0, 0, 1, 1])
    assert r.thresholds == pytest.approx([0.55, 0.5])
    assert r.accuracies == [1.0, 0.5]
    assert r.mean == pytest.approx(0.75)
    assert r.std == pytest.approx(0.25)  # population standard deviation, as LFW code reports


def test_kfold_three_folds_by_hand_with_a_tie() -> None:
    same = [True, True, False, False] * 3
    scores = [0.9, 0.6, 0.5, 0.1] + [0.8, 0.4, 0.3, 0.2] + [0.7, 0.36, 0.34, 0.0]
    folds = [0] * 4 + [1] * 4 + [2] * 4
    # Testing fold 0: folds 1+2 separate perfectly at (0.34 + 0.36) / 2 = 0.35; fold 0's
    # different pair at 0.5 is accepted: 3/4.
    # Testing fold 1: on folds 0+2, 0.35 and 0.55 both get 7/8 right; the lower median of the
    # tied candidates, 0.35, is taken; fold 1 is then all right.
    # Testing fold 2: on folds 0+1, 0.35 and 0.55 tie again; at 0.35 fold 2 is all right.
    r = kfold_accuracy(scores, same, folds)
    assert r.thresholds == pytest.approx([0.35, 0.35, 0.35])
    assert r.accuracies == pytest.approx([0.75, 1.0, 1.0])
    assert r.mean == pytest.approx(11 / 12)
    assert r.std == pytest.approx(np.std([0.75, 1.0, 1.0]))
    assert r.folds == [0, 1, 2]


def test_best_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(6)
    y = rng.random(400) < 0.5
    s = np.round(rng.normal(y * 1.0, 1.0), 2)
    t, acc = best_threshold(s, y)
    grid = np.unique(np.r_[s, s + 1e-6, s.max() + 1])
    brute = max(np.mean((s >= g) == y) for g in grid)
    assert acc == pytest.approx(brute)
    assert np.mean((s >= t) == y) == pytest.approx(acc)


def test_kfold_uses_the_fold_index_not_the_order() -> None:
    rng = np.random.default_rng(7)
    y = rng.random(600) < 0.5
    s = rng.normal(y * 1.5, 1.0)
    folds = rng.integers(0, 10, 600)
    a = kfold_accuracy(s, y, folds)
    perm = rng.permutation(600)
    b = kfold_accuracy(s[perm], y[perm], folds[perm])
    assert a.mean == pytest.approx(b.mean) and a.thresholds == pytest.approx(b.thresholds)


def test_fold_helpers() -> None:
    f = contiguous_folds(6000)
    assert np.bincount(f).tolist() == [600] * 10
    assert (np.diff(f) >= 0).all()
    y = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    g = stratified_folds(y)
    for k in range(10):
        assert y[g == k].sum() == 50 and (~y[g == k]).sum() == 50


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "same", "message"),
    [
        ([0.1, 0.2], [True], "2 scores but 1 labels"),
        ([0.1, float("nan")], [True, False], "NaN"),
        ([0.1, 0.2], [True, True], "both same and different"),
        ([0.1, 0.2], [2, 0], "booleans"),
    ],
)
def test_bad_inputs_are_refused(scores, same, message) -> None:
    with pytest.raises(DataFormatError, match=message):
        roc_curve(scores, same)


def test_kfold_needs_two_folds_and_matching_lengths() -> None:
    with pytest.raises(DataFormatError, match="two folds"):
        kfold_accuracy([0.1, 0.9], [False, True], [0, 0])
    with pytest.raises(DataFormatError, match="fold indices"):
        kfold_accuracy([0.1, 0.9], [False, True], [0])


def test_metrics_json_shape() -> None:
    rng = np.random.default_rng(8)
    s, y = labelled(rng.normal(2, 1, 300), rng.normal(0, 1, 300))
    d = verification_metrics(s, y, stratified_folds(y)).to_dict()
    for key in ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far", "threshold", "pairs"):
        assert key in d
    assert set(d["tar_at_far"]) == {"0.1", "0.01", "0.001", "0.0001"}
    assert d["tar_at_far"]["0.001"] is None and d["tar_at_far"]["0.01"] is not None
    assert "0.001" in d["tar_at_far_unsupported"]
    assert 0.0 <= d["accuracy"] <= 1.0
