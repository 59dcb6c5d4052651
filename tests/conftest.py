"""Shared fixtures (the data directory), markers added at collection, and thread settings.

PyTorch runs on one intra-op thread here, as the runtime does (``TorchEmbedder`` sets one
thread; ONNX Runtime sessions use one): on a small, busy machine extra threads only contend,
which made model tests several times slower. Set ``OMP_NUM_THREADS`` to choose otherwise; the
setting also reaches the CLI subprocesses that tests start.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suite_rules import UNMARKED_HEAVY, unmarked_heavy

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before any test module imports torch

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


@pytest.fixture(scope="session")
def lfw_images(data_dir: Path) -> Path:
    """LFW's 250x250 photos (``lfw/images/<person>/<person>_NNNN.jpg``)."""
    path = data_dir / "lfw" / "images"
    if not path.is_dir():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="session")
def lfw_view2(data_dir: Path) -> Path:
    """The full LFW View 2 list (``lfw/pairs.txt``: 6,000 pairs in 10 folds).

    For tests that run the whole protocol; these are slow by rule (``suite_rules``). Quick tests
    take a few pairs of it instead (``test_eval_cli.small_pairs``).
    """
    path = data_dir / "lfw" / "pairs.txt"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects: marks added here count there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
    config.stash[UNMARKED_HEAVY] = unmarked_heavy(items)
