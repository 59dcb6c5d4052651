"""The command line and the package surface, as a user meets them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


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


def _json_line(stdout: str) -> Any:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected one line of JSON, got {len(lines)}: {stdout[:300]}"
    return json.loads(lines[0])


def test_usage_errors_with_json_are_one_json_object_on_stdout() -> None:
    result = run(sys.executable, "-m", "mobileface", "frobnicate", "--json")
    assert result.returncode == 2
    error = _json_line(result.stdout)
    assert error["error"] == "usage" and "invalid choice" in error["message"]
    missing = run(sys.executable, "-m", "mobileface", "verify", "a.jpg", "--json")
    assert missing.returncode == 2
    error = _json_line(missing.stdout)
    assert error == {
        "error": "usage",
        "message": "the following arguments are required: B",
        "command": "verify",
    }
    bad_far = run(sys.executable, "-m", "mobileface", "verify", "a", "b", "--far", "2", "--json")
    assert bad_far.returncode == 2 and _json_line(bad_far.stdout)["error"] == "usage"


def test_errors_with_json_carry_a_stable_code() -> None:
    result = run(
        sys.executable, "-m", "mobileface", "verify", "a", "b", "-m", "mobilefacenet_relu", "--json"
    )
    assert result.returncode == 1
    error = _json_line(result.stdout)
    assert error["error"] == "model_file" and error["command"] == "verify"
    assert "mobileface models --weights" in error["message"]
    assert "mobilefacenet_int8" in error["message"]
    assert result.stderr == ""
    text = run(sys.executable, "-m", "mobileface", "verify", "a", "b", "-m", "mobilefacenet_relu")
    assert text.returncode == 1 and text.stdout == ""
    assert text.stderr.startswith("mobileface verify: error: 'mobilefacenet_relu' is a zoo")
    far = run(sys.executable, "-m", "mobileface", "verify", "a", "b", "--far", "1e-2", "--json")
    assert far.returncode == 1
    error = _json_line(far.stdout)
    assert error["error"] == "uncalibrated_far" and "1e-3, 1e-4" in error["message"]


def test_usage_errors_raised_by_a_verb_exit_2(tmp_path: Path) -> None:
    args = ("align", str(tmp_path), str(tmp_path / "out"), "--workers", "0")
    text = run(sys.executable, "-m", "mobileface", *args)
    assert text.returncode == 2 and "--workers must be at least 1" in text.stderr
    as_json = run(sys.executable, "-m", "mobileface", *args, "--json")
    assert as_json.returncode == 2 and _json_line(as_json.stdout)["error"] == "usage"


def test_models_json_is_one_line() -> None:
    result = run(sys.executable, "-m", "mobileface", "models", "--json")
    assert result.returncode == 0, result.stderr
    assert len(_json_line(result.stdout)) >= 15


def test_error_codes() -> None:
    from mobileface import errors

    assert errors.error_code(errors.NoFaceError("x")) == "no_face"
    assert errors.error_code(errors.ImageError("x")) == "bad_image"
    assert errors.error_code(errors.ModelFileError("x")) == "model_file"
    assert errors.error_code(errors.DataFormatError("x")) == "data_format"
    assert errors.error_code(errors.MissingDependencyError("x")) == "missing_dependency"
    assert errors.error_code(errors.UsageError("x")) == "usage"
    assert errors.error_code(errors.MobileFaceError("x")) == "error"

    class ModelMismatchError(errors.MobileFaceError):
        pass

    assert errors.error_code(ModelMismatchError("x")) == "model_mismatch"
    assert errors.UsageError.exit_status == 2 and errors.NoFaceError.exit_status == 1


def test_json_line_is_compact_and_strict() -> None:
    import math

    import numpy as np

    from mobileface.cli._format import json_line

    line = json_line({"a": (1, 2.5), "nan": math.nan, "np": np.float32(0.5), "p": Path("x")})
    assert "\n" not in line and " " not in line
    assert json.loads(line) == {"a": [1, 2.5], "nan": None, "np": 0.5, "p": "x"}
