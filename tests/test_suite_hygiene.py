"""The quick run (``pytest -m "not slow"``) stays quick: heavy tests must be marked slow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from suite_rules import (
    HANDFUL_OF_STEPS,
    UNMARKED_HEAVY,
    heavy_reasons,
    large_architectures,
    unmarked_heavy,
)


def test_heavy_tests_are_marked_slow(request: pytest.FixtureRequest) -> None:
    """Every collected test that falls in a heavy kind carries ``@pytest.mark.slow``.

    The kinds, read at collection from each item (``suite_rules.heavy_reasons``), never timed:

    - it uses a heavy fixture: ``installed`` (builds a wheel and a venv), ``browser``
      (headless Chromium), ``lfw_view2`` (the full LFW View 2 protocol);
    - it is a model-wide test that builds a large architecture (over 300 M multiply-adds by
      the stored zoo figures) at its full input size, i.e. its ``arch`` parameter is one;
      reduced-input tests carry the size in their ids (``dw_seesawfacenet_v1@48x48``);
    - its source trains (builds a ``Trainer`` or runs ``mobileface train``) more than a handful
      (4) of steps (``tiny_overrides(N)``, ``schedule.steps=N``), or trains under torchrun.

    ``conftest.py`` checks all items collected in this session, before ``-m`` deselects any.
    """
    offenders = request.config.stash.get(UNMARKED_HEAVY, [])
    assert not offenders, "heavy tests not marked slow:\n" + "\n".join(
        f"{node}: {why}" for node, why in offenders
    )


@dataclass
class FakeItem:
    """What the rules read of a collected item."""

    nodeid: str = "tests/test_x.py::test_x"
    fixturenames: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    function: Any = None
    slow: bool = False

    @property
    def callspec(self) -> Any:
        return type("CallSpec", (), {"params": self.params})() if self.params else None

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


# Sources for the training rule: read, never run.
def trains_long() -> None:
    Trainer(load_config(TINY, tiny_overrides(240)), OUT).run()  # noqa: F821


def trains_briefly() -> None:
    Trainer(load_config(TINY, tiny_overrides(2)), OUT).run()  # noqa: F821


def reads_a_config() -> None:
    load_config(TINY, ["schedule.steps=7"])  # noqa: F821


def test_the_rules_recognise_each_heavy_kind() -> None:
    assert {"dw_seesawfacenet_v1", "squeezefaceposenet"} <= large_architectures()
    assert "mobilefacenet" not in large_architectures()
    heavy = [
        FakeItem(fixturenames=("installed", "tmp_path")),
        FakeItem(fixturenames=("lfw_view2",)),
        FakeItem(params={"arch": "dw_seesawfacenet_v1"}),
        FakeItem(function=trains_long),
    ]
    light = [
        FakeItem(fixturenames=("data_dir", "tmp_path")),
        FakeItem(params={"arch": "mobilefacenet"}),
        FakeItem(params={"calibrated": "dw_seesawfacenet_v1"}),
        FakeItem(function=trains_briefly),
        FakeItem(function=reads_a_config),
    ]
    assert all(heavy_reasons(item) for item in heavy)
    assert not any(heavy_reasons(item) for item in light)
    assert "240 steps" in heavy_reasons(heavy[-1])[0] and HANDFUL_OF_STEPS < 240
    marked = [FakeItem(nodeid=f"t{i}", fixturenames=("installed",), slow=i == 0) for i in (0, 1)]
    assert [node for node, _ in unmarked_heavy(marked)] == ["t1"]
