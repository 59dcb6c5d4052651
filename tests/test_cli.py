"""The command line and the package surface, as a user meets them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_python_dash_m_shows_help() -> None:
    result = run(sys.executable, "-m", "mobileface", "--help")
    assert result.returncode == 0
    assert "models" in result.stdout


def test_models_json_lists_the_zoo_with_measured_figures() -> None:
    result = run(sys.executable, "-m", "mobileface", "models", "mobilefacenet*", "--json")
    assert result.returncode == 0, result.stderr
    cards = {c["name"]: c for c in json.loads(result.stdout)}
    assert "mobilefacenet_s" in cards and "seesaw_shufflefacenet" not in cards
    card = cards["mobilefacenet"]
    assert card["params_folded"] == 993_344
    assert card["madds"] == 220_965_376
    assert card["input_size"] == [112, 112]


def test_models_table_is_printed_by_the_console_script() -> None:
    script = Path(sys.executable).parent / "mobileface"
    result = run(str(script) if script.exists() else "mobileface", "models", "squeeze*")
    assert result.returncode == 0, result.stderr
    assert "squeezefaceposenet_dw" in result.stdout
    assert "694,056" in result.stdout


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, mobileface, mobileface.cli; print('torch' in sys.modules)"
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_unknown_command_fails_with_usage() -> None:
    result = run(sys.executable, "-m", "mobileface", "frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
