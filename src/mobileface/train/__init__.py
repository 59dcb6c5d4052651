"""Training engine: YAML recipes, margin heads, Partial FC, distillation, DDP via torchrun."""

from .config import Config, load_config
from .engine import Trainer

__all__ = ["Config", "Trainer", "load_config"]
