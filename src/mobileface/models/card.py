"""Model cards: measured facts about each registered architecture.

Figures are computed from the code, not typed in: parameters before and after batch-norm
folding, multiply-adds of one forward pass, and the fp32 size of the folded weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .fold import fold_batchnorm
from .profile import count_madds, count_parameters
from .registry import create_model, list_models, model_spec

BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class ModelCard:
    """Measured description of one architecture (with default arguments)."""

    name: str
    family: str
    input_size: tuple[int, int]
    embedding_size: int
    params: int
    params_folded: int
    madds: int
    fp32_mb: float
    paper: str
    description: str
    paper_figures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def model_card(name: str) -> ModelCard:
    """Build ``name`` and measure it."""
    spec = model_spec(name)
    model = create_model(name).eval()
    folded = fold_batchnorm(model)
    with torch.no_grad():
        embedding = model(torch.zeros(1, 3, *model.input_size))
    params_folded = count_parameters(folded)
    return ModelCard(
        name=name,
        family=spec.family,
        input_size=tuple(model.input_size),
        embedding_size=int(embedding.shape[1]),
        params=count_parameters(model),
        params_folded=params_folded,
        madds=count_madds(model),
        fp32_mb=round(params_folded * 4 / BYTES_PER_MB, 3),
        paper=spec.paper,
        description=spec.description,
        paper_figures=spec.paper_figures,
    )


def model_cards(pattern: str = "*") -> list[ModelCard]:
    """Cards of every registered model matching ``pattern``."""
    return [model_card(name) for name in list_models(pattern)]
