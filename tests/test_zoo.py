"""The zoo's stored figures (``mobileface models`` lists them) against the code they describe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobileface import weights
from mobileface.models import list_models, model_card, model_spec
from mobileface.zoo import ZOO_FILE, zoo_entries, zoo_names

FIX = "rewrite them with: python -m mobileface.zoo --write"


def test_every_registered_model_has_stored_figures() -> None:
    assert zoo_names() == list_models(), f"stored zoo figures out of date; {FIX}"


@pytest.mark.parametrize("name", list_models())
def test_stored_registry_facts_match_the_registry(name: str) -> None:
    """The facts known without building (fast): names, sizes, family, paper."""
    spec = model_spec(name)
    (stored,) = [e for e in zoo_entries() if e["name"] == name]
    assert stored["family"] == spec.family
    assert tuple(stored["input_size"]) == tuple(spec.input_size)
    assert stored["embedding_size"] == spec.embedding_size
    assert stored["paper"] == spec.paper and stored["description"] == spec.description
    assert stored["paper_figures"] == spec.paper_figures


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_stored_figures_equal_the_measured_ones(name: str) -> None:
    """Build the model and measure it: every stored figure must be what the code gives."""
    measured = json.loads(json.dumps(model_card(name).to_dict()))
    (stored,) = [e for e in zoo_entries() if e["name"] == name]
    assert stored == measured, f"{name}: stored figures differ from the code; {FIX}"


def test_zoo_file_is_package_data() -> None:
    """pyproject ships ``assets/*``: the listing must not depend on the source tree."""
    assert ZOO_FILE.parent.name == "assets" and ZOO_FILE.parent.parent.name == "mobileface"


def _cli_json(*args: str) -> tuple[object, bool]:
    """Run the CLI in a fresh process; ``(its JSON output, whether it imported torch)``."""
    code = (
        "import sys, contextlib, io\n"
        "from mobileface.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    status = main({list(args)!r})\n"
        "assert status == 0, status\n"
        "print(out.getvalue(), end='')\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "--json prints one line"
    return json.loads(lines[0]), result.stderr.strip().splitlines()[-1] == "True"


def test_models_listing_needs_no_torch_and_names_the_bundled_weights() -> None:
    listed, imported_torch = _cli_json("models", "--json")
    assert not imported_torch, "mobileface models must not import PyTorch (nor build models)"
    by_name = {e["name"]: e for e in listed}
    assert sorted(by_name) == zoo_names()
    cards = {n: weights.load_model_card(n) for n in weights.list_weights()}
    for name, entry in by_name.items():
        expected = sorted(n for n, card in cards.items() if card.get("architecture") == name)
        assert sorted(entry["weights"]) == expected
    # The default weights are the ReLU network, not the zoo's PReLU `mobilefacenet`.
    assert "mobilefacenet" in by_name["mobilefacenet_relu"]["weights"]
    assert by_name["mobilefacenet"]["weights"] == []


def test_models_weights_view_reads_the_model_cards() -> None:
    listed, imported_torch = _cli_json("models", "--weights", "--json")
    assert not imported_torch
    assert [w["name"] for w in listed] == weights.list_weights()
    for info in listed:
        card = weights.load_model_card(info["name"])
        assert info["architecture"] == card["architecture"]
        assert info["thresholds"] == card["thresholds"]
        assert info["calibration_tar"] == card["calibration"]["tar"]
        lfw = card["results"]["lfw_view2"]
        assert info["lfw_view2"]["accuracy"] == lfw["accuracy"]
        assert info["lfw_view2"]["tar_at_far"] == lfw["tar_at_far"]
        assert info["precision"] == ("int8" if info["name"].endswith("_int8") else "fp32")
        assert info["default"] == (info["name"] == weights.default_weights_name())


def test_models_weights_table_shows_thresholds_and_tar() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mobileface", "models", "--weights"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    card = weights.load_model_card("mobilefacenet")
    for key in ("far_1e-3", "far_1e-4"):
        assert f"threshold FAR {key[4:]}" in result.stdout
        assert f"{card['thresholds'][key]:.4f}" in result.stdout
        assert f"{100 * card['calibration']['tar'][key]:.1f} %" in result.stdout
    accuracy = card["results"]["lfw_view2"]["accuracy"]
    assert f"{100 * accuracy:.2f} +- " in result.stdout
    assert "mobilefacenet_relu" in result.stdout and "--model" in result.stdout


def test_unknown_model_names_say_which_names_are_valid() -> None:
    from mobileface.errors import ModelFileError

    bundled = ", ".join(weights.list_weights())
    with pytest.raises(ModelFileError) as arch:
        weights.resolve_weights("mobilefacenet_relu")
    text = str(arch.value)
    assert "zoo architecture" in text and "its bundled weights are mobilefacenet" in text
    assert bundled in text and "mobileface models --weights" in text
    with pytest.raises(ModelFileError) as untrained:
        weights.resolve_weights("seesaw_shufflefacenet")
    assert "without bundled weights" in str(untrained.value)
    with pytest.raises(ModelFileError) as typo:
        weights.resolve_weights("mobilefacenet_int")
    assert "did you mean mobilefacenet_int8" in str(typo.value)
