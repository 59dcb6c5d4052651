"""Verification accuracy during training on any pair list (e.g. LFW View 1's pairsDevTest.txt).

Crops are read (and, for photos, detected and aligned) once when training starts; each call
embeds them with the current model in eval mode, sums each crop's embedding with its mirror
image's, and reports the k-fold accuracy, AUC and EER of the pair list.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import torch
from torch import nn

from mobileface.data.pairs import read_pairs
from mobileface.evaluation.metrics import verification_metrics
from mobileface.image import load_image

from .config import EvalConfig

PIXEL_MEAN, PIXEL_SCALE = 127.5, 1 / 128.0


def _crop(path, aligned: bool, size: tuple[int, int], detector) -> np.ndarray:
    image = load_image(path)
    if not aligned:
        from mobileface.align import align_image
        from mobileface.errors import NoFaceError

        with contextlib.suppress(NoFaceError):  # no face: fall back to the resized photo
            image, _ = align_image(image, detector, size=size)
    h, w = size
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


class VerificationCallback:
    """Callable: ``callback(model) -> {"eval/accuracy": ..., ...}``."""

    def __init__(self, config: EvalConfig, image_size: tuple[int, int]) -> None:
        self.config = config
        pairs = read_pairs(config.pairs, config.images)
        paths = sorted({p for pair in pairs for p in (pair.image_a, pair.image_b)})
        index = {p: i for i, p in enumerate(paths)}
        detector = None
        if not config.aligned:
            from mobileface.align import create_detector

            detector = create_detector()
        self.crops = np.stack([_crop(p, config.aligned, image_size, detector) for p in paths])
        self.first = np.array([index[p.image_a] for p in pairs])
        self.second = np.array([index[p.image_b] for p in pairs])
        self.same = np.array([p.same for p in pairs])
        self.folds = np.array([p.fold for p in pairs])

    @torch.no_grad()
    def embed(self, model: nn.Module) -> np.ndarray:
        """L2-normalised (crop + mirrored crop) embeddings of every image."""
        model.eval()
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(self.crops), self.config.batch_size):
            batch = torch.from_numpy(self.crops[start : start + self.config.batch_size])
            x = (batch.to(device).permute(0, 3, 1, 2).float() - PIXEL_MEAN) * PIXEL_SCALE
            out.append((model(x) + model(torch.flip(x, dims=[3]))).float().cpu())
        embeddings = torch.cat(out)
        return torch.nn.functional.normalize(embeddings, dim=1).numpy()

    def __call__(self, model: nn.Module) -> dict[str, float]:
        embeddings = self.embed(model)
        scores = np.sum(embeddings[self.first] * embeddings[self.second], axis=1)
        metrics = verification_metrics(scores, self.same, self.folds)
        return {"eval/accuracy": metrics.accuracy, "eval/auc": metrics.auc, "eval/eer": metrics.eer}
