"""A plain install works offline from any folder: no checkout, no ../shared, no cache, no
MOBILEFACE_* variables, no network. The package carries YuNet and the default weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project pip-installed from a wheel (not editable).

    Its third-party dependencies come from this environment's site-packages through a
    ``.pth`` file, so the test needs no package index; the project itself is a real wheel.
    """
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=SKIP)
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
         str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{build.stderr[-2000:]}")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("mobileface-*.whl"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.fail(f"installing the wheel failed:\n{install.stderr[-2000:]}")
    return venv


def offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBILEFACE_")}
    env.pop("PYTHONPATH", None)
    unreachable = "http://127.0.0.1:9"  # any download attempt fails at once
    env.update(HOME=str(home), http_proxy=unreachable, https_proxy=unreachable)
    env.update(HTTP_PROXY=unreachable, HTTPS_PROXY=unreachable)
    return env


@pytest.mark.slow
def test_verify_works_offline_from_an_empty_folder(
    installed: Path, data_dir: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    lfw = data_dir / "lfw" / "images"
    for person, number in [("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), ("Abel_Pacheco", 1)]:
        shutil.copy(lfw / person / f"{person}_{number:04d}.jpg", photos)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = offline_env(tmp_path / "home")

    def verify(a: str, b: str) -> dict:
        result = subprocess.run(
            [str(installed / "bin" / "mobileface"), "verify", str(photos / a), str(photos / b),
             "--json"],
            cwd=empty, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    same = verify("Aaron_Peirsol_0001.jpg", "Aaron_Peirsol_0002.jpg")
    different = verify("Aaron_Peirsol_0001.jpg", "Abel_Pacheco_0001.jpg")
    assert same["same"] is True and different["same"] is False
    assert list(empty.iterdir()) == []  # nothing written where it was run
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import mobileface; print(mobileface.__file__)"],
        cwd=empty, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(installed) in where  # the installed copy, not the checkout


@pytest.mark.slow
def test_models_lists_the_stored_zoo_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """The zoo's stored figures (``assets/model_zoo.json``) ship in the wheel."""
    result = subprocess.run(
        [str(installed / "bin" / "mobileface"), "models", "--json"],
        cwd=tmp_path, env=offline_env(tmp_path / "home"), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    listed = {e["name"]: e for e in json.loads(result.stdout)}
    assert listed["mobilefacenet"]["madds"] == 220_965_376
    assert "mobilefacenet" in listed["mobilefacenet_relu"]["weights"]
