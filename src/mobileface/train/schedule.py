"""Learning-rate schedules with linear warm-up, as multiplicative factors of the base rate."""

from __future__ import annotations

import bisect
import math

from .config import ScheduleConfig


def lr_factor(step: int, config: ScheduleConfig, base_lr: float) -> float:
    """Factor applied to ``base_lr`` at optimiser step ``step`` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.type == "step":
        return config.gamma ** bisect.bisect_right(config.milestones, step)
    if config.type == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    floor = config.min_lr / base_lr
    if config.type == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.type == "poly":
        return floor + (1 - floor) * (1 - progress) ** config.power
    raise ValueError(f"unknown schedule type {config.type!r}")
