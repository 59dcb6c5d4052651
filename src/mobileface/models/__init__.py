"""The model zoo: ``create_model(name)``, ``list_models()``, ``model_card(name)``.

Every model maps ``N x 3 x H x W`` float images to ``N x D`` embeddings. Embeddings are not
L2-normalised: normalise them before comparing by cosine similarity.
"""

from . import mobilefacenet, mobilenetv2, seesawfacenet, squeezefaceposenet  # noqa: F401
from .card import ModelCard, model_card, model_cards
from .fold import fold_batchnorm
from .profile import count_madds, count_parameters
from .registry import ModelSpec, create_model, list_models, model_spec, register_model

__all__ = [
    "ModelCard",
    "ModelSpec",
    "count_madds",
    "count_parameters",
    "create_model",
    "fold_batchnorm",
    "list_models",
    "model_card",
    "model_cards",
    "model_spec",
    "register_model",
]
