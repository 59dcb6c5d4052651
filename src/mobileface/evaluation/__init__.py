"""Evaluation by the field's protocols: verification (LFW 10-fold, ROC, EER, TAR@FAR, pose
split), identification (CMC, rank-k, TPIR@FPIR), reports, threshold calibration, and an
embedding cache. Torch-free: metrics need NumPy only; the pipelines use the runtime.

Modules: :mod:`.metrics`, :mod:`.verification`, :mod:`.pose`, :mod:`.identification`,
:mod:`.report`, :mod:`.calibration`, :mod:`.cache`, :mod:`.pipeline`, :mod:`.models`.
"""

from __future__ import annotations

from .identification import identification_metrics, tpir_at_fpir
from .metrics import (
    DEFAULT_FARS,
    auc,
    best_threshold,
    eer,
    kfold_accuracy,
    roc_curve,
    tar_at_far,
    verification_metrics,
)
from .pose import estimate_yaw, pose_split_eer

__all__ = [
    "DEFAULT_FARS",
    "auc",
    "best_threshold",
    "eer",
    "estimate_yaw",
    "identification_metrics",
    "kfold_accuracy",
    "pose_split_eer",
    "roc_curve",
    "tar_at_far",
    "tpir_at_fpir",
    "verification_metrics",
]
