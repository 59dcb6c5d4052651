"""Identification (1:N) metrics: CMC, rank-k, TPIR at FPIR, distractors."""

from __future__ import annotations

import numpy as np
import pytest

from mobileface.errors import DataFormatError
from mobileface.evaluation.identification import (
    build_templates,
    cmc_curve,
    identification_metrics,
    ranks,
    tpir_at_fpir,
)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_perfect_embeddings_rank_every_probe_first() -> None:
    ids = [f"id{i}" for i in range(8)]
    basis = np.eye(8, dtype=np.float32)
    m = identification_metrics(basis, ids, basis, ids)
    assert m.rank1 == 1.0 and m.rank5 == 1.0
    assert m.cmc == [1.0] * 8  # max rank capped by the gallery size
    assert m.mated_probes == 8 and m.nonmated_probes == 0


def test_ranks_and_cmc_by_hand() -> None:
    # Probe rows, gallery columns; the true column of each probe is given.
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # true 0: rank 1
            [0.5, 0.4, 0.6],  # true 1: two score higher, rank 3
            [0.3, 0.7, 0.7],  # true 2: tied with column 1, ties count against it: rank 2
        ]
    )
    r = ranks(scores, np.array([0, 1, 2]))
    assert r.tolist() == [1, 3, 2]
    assert cmc_curve(r, 3).tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_constant_scores_never_look_perfect() -> None:
    r = ranks(np.zeros((4, 4)), np.arange(4))
    assert (r == 4).all()


def test_templates_average_normalised_embeddings() -> None:
    t, names = build_templates([[2, 0], [0, 5], [1, 1]], ["b", "a", "a"])
    assert names == ["a", "b"]
    np.testing.assert_allclose(t[1], [1, 0])
    expected = unit(np.array([0, 1]) + unit([1, 1]))
    np.testing.assert_allclose(t[0], expected, rtol=1e-6)


def test_distractors_push_probes_down() -> None:
    gallery = unit([[1, 0, 0], [0, 1, 0]])
    probes = unit([[1, 0.3, 0], [0.2, 1, 0]])
    ids = ["a", "b"]
    base = identification_metrics(probes, ids, gallery, ids)
    assert base.rank1 == 1.0
    # A distractor closer to the first probe than its own gallery entry.
    distractors = unit([[1, 0.3, 0.01], [0, 0, 1]])
    m = identification_metrics(probes, ids, gallery, ids, distractors)
    assert m.distractors == 2
    assert m.rank1 == 0.5
    assert m.cmc[1] == 1.0


def test_tpir_at_fpir_by_hand() -> None:
    # Ten non-mated probes with best scores 0.0..0.9: FPIR 0.1 allows one (the 0.9), so the
    # threshold is the lowest score above 0.8 among all top scores.
    nonmated = np.arange(10) / 10
    mated = np.array([0.95, 0.85, 0.99, 0.5])
    correct = np.array([True, True, False, True])
    (r,) = tpir_at_fpir(mated, correct, nonmated, [0.1])
    assert r.threshold == pytest.approx(0.85)
    # 0.95 and 0.85 are correct and above; 0.99's best entry is someone else; 0.5 is below.
    assert r.tpir == pytest.approx(0.5)


def test_tpir_needs_enough_nonmated_probes() -> None:
    res = tpir_at_fpir([0.9], [True], np.zeros(50), [0.1, 0.01])
    assert res[0].tpir is not None
    assert res[1].tpir is None and "100 non-mated" in res[1].reason
    (none,) = tpir_at_fpir([], [], np.zeros(50), [0.1])
    assert none.tpir is None and none.reason == "no mated probes"


def test_open_set_with_unknown_probes() -> None:
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(40, 64)))
    names = [f"p{i}" for i in range(40)]
    gallery = centres[:30]  # the last ten people are not enrolled
    probes = unit(centres + 0.05 * rng.normal(size=centres.shape))
    m = identification_metrics(probes, names, gallery, names[:30], fpirs=[0.1])
    assert m.mated_probes == 30 and m.nonmated_probes == 10
    assert m.rank1 == 1.0
    assert m.tpir_at_fpir[0].tpir == 1.0  # genuine scores near 1, impostors near 0
    d = m.to_dict()
    assert d["tpir_at_fpir"] == {"0.1": 1.0}
    assert set(d) >= {"rank1", "rank5", "cmc", "probes", "gallery_identities"}


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(DataFormatError):
        identification_metrics(np.eye(2), ["a"], np.eye(2), ["a", "b"])
    with pytest.raises(DataFormatError):
        build_templates(np.eye(2), ["a"])
