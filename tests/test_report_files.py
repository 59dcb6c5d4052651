"""Files the reports write are for sharing: they get the permissions any new file would."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from mobileface.evaluation.metrics import stratified_folds, verification_metrics
from mobileface.evaluation.report import VerificationEntry, write_verification_report


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_report_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        rng = np.random.default_rng(0)
        same = np.repeat([True, False], 300)
        scores = np.where(same, 0.6, 0.1) + 0.15 * rng.standard_normal(same.size)
        entry = VerificationEntry(
            "m", scores, same, verification_metrics(scores, same, stratified_folds(same))
        )
        files = write_verification_report([entry], tmp_path / "report")
    finally:
        os.umask(old)
    assert {"roc", "markdown", "html"} <= set(files)
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.startswith(".")]
