"""Model files: a zoo model's weights with what is needed to rebuild it.

A checkpoint is a ``torch.save`` dictionary holding at least ``model_name`` (a registered
name), ``model_kwargs`` (builder arguments) and ``model`` (the state dict). Training
checkpoints add the head, optimiser, scheduler and RNG states; this module only needs the
model part. Files are loaded with ``weights_only=True``, so a hostile pickle cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobileface.errors import ModelFileError

from .registry import create_model


def save_model_checkpoint(
    model: nn.Module, path: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (built by ``create_model``) and ``extra`` entries to ``path`` atomically."""
    state = {
        "model_name": model.model_name,
        "model_kwargs": getattr(model, "model_kwargs", {}),
        "model": model.state_dict(),
        **(extra or {}),
    }
    return atomic_torch_save(state, path)


def atomic_torch_save(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A process killed mid-write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dictionary safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or hostile files
        raise ModelFileError(f"{path}: not a readable mobileface checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "model_name" not in state or "model" not in state:
        raise ModelFileError(f"{path}: checkpoint lacks 'model_name' or 'model' entries")
    return state


def load_model_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild the zoo model stored in ``path`` with its weights, in eval mode."""
    state = read_checkpoint(path)
    try:
        model = create_model(state["model_name"], **state.get("model_kwargs", {}))
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ModelFileError(f"{path}: weights do not fit {state['model_name']!r}: {exc}") from exc
    return model.eval()
