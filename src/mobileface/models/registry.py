"""A registry of model architectures in the style of timm: ``create_model`` and ``list_models``.

Each architecture registers a builder with the facts that do not need a forward pass to know
(input size, embedding size, family, paper and the paper's own figures). Measured facts
(parameters, multiply-adds, size) live in :mod:`mobileface.models.card`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What is known about an architecture before it is built."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int]
    embedding_size: int
    paper: str
    description: str
    paper_figures: dict[str, float] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    family: str,
    input_size: tuple[int, int],
    embedding_size: int,
    paper: str,
    description: str,
    paper_figures: dict[str, float] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder function under ``name``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            family=family,
            input_size=input_size,
            embedding_size=embedding_size,
            paper=paper,
            description=description,
            paper_figures=dict(paper_figures or {}),
        )
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_spec(name: str) -> ModelSpec:
    """The registered spec for ``name``; a clear ``KeyError`` suggests near names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"unknown model {name!r}{hint} (known: {', '.join(list_models())})"
        ) from None


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name``; ``kwargs`` go to its builder.

    The model maps ``N x 3 x H x W`` float images to ``N x D`` embeddings that are *not*
    L2-normalised (normalise before comparing with cosine similarity). It carries
    ``input_size`` and ``embedding_size`` attributes.
    """
    spec = model_spec(name)
    model = spec.builder(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
