"""Reports (plots and summaries), threshold calibration, and the embedding cache."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from mobileface.errors import DataFormatError
from mobileface.evaluation.cache import EmbeddingCache, make_key
from mobileface.evaluation.calibration import (
    calibrate,
    card_thresholds,
    parse_threshold_key,
    read_card,
    threshold_key,
    write_thresholds,
)
from mobileface.evaluation.identification import identification_metrics
from mobileface.evaluation.metrics import stratified_folds, verification_metrics
from mobileface.evaluation.report import (
    IdentificationEntry,
    VerificationEntry,
    write_identification_report,
    write_verification_report,
)

PNG = b"\x89PNG\r\n\x1a\n"


def scored(seed: int, separation: float, n: int = 2000):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    scores = np.clip(np.where(same, separation, 0.0) + 0.15 * rng.normal(size=n), -1, 1)
    return scores, same


def entry(label: str, seed: int, separation: float) -> VerificationEntry:
    s, y = scored(seed, separation)
    m = verification_metrics(s, y, stratified_folds(y))
    return VerificationEntry(label, s, y, m, {"failed_images": 3, "failed": {"x.jpg": "no face"}})


# --- reports -----------------------------------------------------------------------------------


def test_verification_report_with_several_models(tmp_path) -> None:
    entries = [entry("ours", 0, 0.6), entry("peer | other", 1, 0.4)]
    files = write_verification_report(entries, tmp_path / "rep", title="LFW")
    for key in ("roc", "det", "hist"):
        assert files[key].read_bytes().startswith(PNG)
        assert files[key].stat().st_size > 5000
    md = files["markdown"].read_text()
    assert "# LFW" in md and "ours" in md and "peer \\| other" in md  # pipes escaped
    assert "TAR@FAR=0.001" in md and "![ROC](roc.png)" in md
    assert "TAR at FAR 0.0001 not reported" in md  # 1,000 different pairs cannot measure 1e-4
    assert "x.jpg: no face" in md
    html = files["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "peer | other" in html
    assert not list((tmp_path / "rep").glob(".*"))  # no temporary files left behind


def test_verification_report_shows_pose_bins(tmp_path) -> None:
    e = entry("ours", 2, 0.6)
    e.details["pose"] = {
        "bins": {
            "frontal-frontal": {"same_pairs": 10, "different_pairs": 12, "eer": 0.01},
            "frontal-profile": {"same_pairs": 0, "different_pairs": 3, "eer": None},
        }
    }
    files = write_verification_report([e], tmp_path, html_page=False)
    md = files["markdown"].read_text()
    assert "## Pose split" in md and "frontal-profile" in md and "1.00%" in md
    assert "html" not in files


def test_identification_report(tmp_path) -> None:
    eye = np.eye(6, dtype=np.float32)
    ids = list("abcdef")
    m = identification_metrics(eye, ids, eye, ids)
    files = write_identification_report([IdentificationEntry("ours", m)], tmp_path)
    assert files["cmc"].read_bytes().startswith(PNG)
    md = files["markdown"].read_text()
    assert "rank-1" in md and "100.00%" in md
    assert "TPIR at FPIR 0.1 not reported (no mated" not in md
    assert "non-mated probes" in md


# --- calibration -------------------------------------------------------------------------------


def test_threshold_keys() -> None:
    assert [threshold_key(f) for f in (1e-1, 1e-3, 5e-4, 2.5e-3)] == [
        "far_1e-1",
        "far_1e-3",
        "far_5e-4",
        "far_2.5e-3",
    ]
    assert parse_threshold_key("far_1e-3") == pytest.approx(1e-3)
    with pytest.raises(DataFormatError):
        parse_threshold_key("tar_1e-3")
    with pytest.raises(DataFormatError):
        threshold_key(0.0)


def test_calibration_written_into_the_card(tmp_path) -> None:
    s, y = scored(3, 0.5, n=4000)
    cal = calibrate(s, y, [1e-1, 1e-2, 1e-3, 1e-4], dataset="synthetic", flip=True)
    assert set(cal.thresholds) == {"far_1e-1", "far_1e-2", "far_1e-3"}
    assert "far_1e-4" in cal.unsupported
    # Each threshold gives at most its FAR on the calibration pairs, and the next lower score
    # would give more: it is the lowest such threshold.
    for key, t in cal.thresholds.items():
        far = parse_threshold_key(key)
        assert np.mean(s[~y] >= t) <= far
        assert np.mean(s[~y] >= s[s < t].max()) > far
    assert cal.thresholds["far_1e-1"] < cal.thresholds["far_1e-2"] < cal.thresholds["far_1e-3"]
    card = tmp_path / "model.json"
    card.write_text(json.dumps({"name": "m", "thresholds": {"far_1e-6": 0.9}}))
    write_thresholds(card, cal)
    data = read_card(card)
    assert data["name"] == "m"
    assert data["thresholds"] == cal.thresholds  # replaced, not merged
    assert data["calibration"]["dataset"] == "synthetic"
    assert data["calibration"]["flip"] is True
    assert "date" in data["calibration"]
    assert card_thresholds(data)[1e-3] == pytest.approx(cal.thresholds["far_1e-3"])
    assert not [p for p in tmp_path.iterdir() if p.name != "model.json"]


def test_calibration_creates_a_card_and_can_merge(tmp_path) -> None:
    s, y = scored(4, 0.5)
    card = tmp_path / "sub" / "new.json"
    write_thresholds(card, calibrate(s, y, [1e-1]))
    write_thresholds(card, calibrate(s, y, [1e-2]), replace=False)
    assert set(read_card(card)["thresholds"]) == {"far_1e-1", "far_1e-2"}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataFormatError):
        read_card(bad)


# --- cache -------------------------------------------------------------------------------------


def test_cache_round_trip_and_counters(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    k1, k2 = make_key("embedding", "model", "img1"), make_key("embedding", "model", "img2")
    assert k1 != k2 and k1 == make_key("embedding", "model", "img1")
    v = np.arange(128, dtype=np.float32) / 7
    with EmbeddingCache(path) as cache:
        assert cache.get_many([k1, k2]) == {}
        assert cache.misses == 2
        cache.put(k1, v, {"status": "ok", "landmarks": [[1, 2]] * 5})
        assert cache.writes == 1
    with EmbeddingCache(path) as cache:
        got = cache.get_many([k1, k2])
        assert list(got) == [k1] and cache.hits == 1 and cache.misses == 1
        arr, meta = got[k1]
        np.testing.assert_array_equal(arr, v)
        assert arr.dtype == np.float32 and meta["status"] == "ok"
        assert len(cache) == 1


def test_cache_refuses_objects_and_survives_bad_rows(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    with EmbeddingCache(path) as cache:
        with pytest.raises(TypeError):
            cache.put("k", np.array([object()]))
        cache.put("good", np.ones(3, np.float32))
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT INTO entries VALUES ('bad', 'object', '[3]', x'00', '{}', 0),"
            " ('short', 'float32', '[3]', x'0000', '{}', 0)"
        )
    db.close()
    with EmbeddingCache(path) as cache:
        assert list(cache.get_many(["good", "bad", "short"])) == ["good"]
