"""Comparing embeddings: L2 normalisation and cosine similarity (NumPy only)."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit L2 norm along ``axis`` (float32; all-zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, EPS)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity of ``a`` and ``b`` along their last axis, row by row.

    Two vectors give a float; two ``N x D`` arrays give ``N`` scores (broadcasting applies, so
    one vector against ``N x D`` rows works too). For all pairs use :func:`cosine_matrix`.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape[-1]} and {b.shape[-1]}")
    scores = np.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
    return float(scores) if np.ndim(scores) == 0 else scores


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All-pairs cosine similarity: ``N x D`` and ``M x D`` -> ``N x M``."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape[-1]} and {b.shape[-1]}")
    return l2_normalize(a) @ l2_normalize(b).T
