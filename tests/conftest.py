"""Shared fixtures: the data directory, and models with realistic batch-norm statistics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``MOBILEFACE_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("MOBILEFACE_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data set; tests using it skip, saying why, where it is absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set MOBILEFACE_DATA)")
    return root


@pytest.fixture
def tiny_folder(data_dir: Path, tmp_path: Path) -> Path:
    """Three Pinterest identities with eight crops each, copied into a fresh folder."""
    import shutil

    root = tmp_path / "tiny"
    for person in sorted(p for p in (data_dir / "pins-112").iterdir() if p.is_dir())[:3]:
        (root / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:8]:
            shutil.copy(image, root / person.name / image.name)
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
