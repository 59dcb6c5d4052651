"""Which tests are heavy: the rules behind the collection check (see test_suite_hygiene.py).

Each rule reads only what collection gives: an item's fixtures, its parameters, and the source
of its test function. A heavy item must carry the ``slow`` marker; ``conftest.py`` records the
ones that do not.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable

import pytest

LARGE_MADDS = 300_000_000
"""Architectures above this many multiply-adds (stored zoo figures) are large."""

HANDFUL_OF_STEPS = 4
"""Training runs of more steps than this are slow."""

HEAVY_FIXTURES = {
    "installed": "builds a wheel and a virtual environment",
    "browser": "drives headless Chromium",
    "lfw_view2": "embeds the full LFW View 2 protocol (6,000 pairs)",
    "postgres": "starts (or shares) a PostgreSQL server",
}
"""Fixtures whose users are heavy, with why."""

FULL_SIZE_FIXTURE = "arch"
"""Model-wide tests that build each architecture at its registered input size take its name
from this fixture; reduced-input tests use their own parameters (ids ``name@HxW``)."""

UNMARKED_HEAVY = pytest.StashKey[list[tuple[str, str]]]()
"""``(node id, why it is heavy)`` of each collected item that breaks a rule."""

_STEPS = re.compile(r"tiny_overrides\(\s*(\d+)|schedule\.steps=(\d+)")
_TRAINS = re.compile(r"Trainer\(|\"train\"")  # the engine, or the `mobileface train` verb
_TORCHRUN = "torch.distributed.run"


@functools.cache
def large_architectures() -> frozenset[str]:
    """Registered architectures whose stored multiply-adds exceed :data:`LARGE_MADDS`."""
    from mobileface.zoo import zoo_entries

    return frozenset(e["name"] for e in zoo_entries() if e["madds"] > LARGE_MADDS)


@functools.cache
def _source(function: Callable) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def training_steps(source: str) -> int:
    """The most steps ``source`` trains (``tiny_overrides(N)``, ``schedule.steps=N``); 0 when it
    builds no ``Trainer`` and runs no ``mobileface train`` (a config read is no training)."""
    if not _TRAINS.search(source):
        return 0
    return max((int(a or b) for a, b in _STEPS.findall(source)), default=0)


def heavy_reasons(item: pytest.Item) -> list[str]:
    """Why ``item`` is heavy (empty when it is not)."""
    reasons = [
        f"uses the {name!r} fixture, which {why}"
        for name, why in HEAVY_FIXTURES.items()
        if name in getattr(item, "fixturenames", ())
    ]
    callspec = getattr(item, "callspec", None)
    arch = callspec.params.get(FULL_SIZE_FIXTURE) if callspec else None
    if arch in large_architectures():
        reasons.append(f"builds the large {arch} at its full input size")
    function = getattr(item, "function", None)
    source = _source(function) if function else ""
    steps = training_steps(source)
    if steps > HANDFUL_OF_STEPS:
        reasons.append(f"trains {steps} steps (more than {HANDFUL_OF_STEPS})")
    if _TORCHRUN in source:
        reasons.append("trains in several processes under torchrun")
    return reasons


def unmarked_heavy(items: list[pytest.Item]) -> list[tuple[str, str]]:
    """``(node id, reason)`` for each heavy item without the ``slow`` marker."""
    return [
        (item.nodeid, reason)
        for item in items
        if item.get_closest_marker("slow") is None
        for reason in heavy_reasons(item)
    ]
