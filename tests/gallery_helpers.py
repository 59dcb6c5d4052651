"""Helpers for the gallery, service and web page tests: a real ONNX model, LFW people, and a
real ``mobileface serve`` subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

_MODELS: dict[str, Path] = {}


def export_test_model(root: Path) -> Path:
    """A random-init MobileFaceNet (realistic BN statistics) exported to ONNX, once per run.

    Its embeddings identify the very same photo (score 1) and little else: enough to test
    plumbing. Accuracy tests use the peer model instead.
    """
    if "mobilefacenet" not in _MODELS:
        torch = pytest.importorskip("torch", reason="exporting the test model needs PyTorch")
        from mobileface.export import export_onnx
        from mobileface.models import create_model
        from models_helpers import randomize_and_calibrate

        torch.manual_seed(0)
        model = randomize_and_calibrate(create_model("mobilefacenet"))
        _MODELS["mobilefacenet"] = export_onnx(model, root / "mobilefacenet-random.onnx")
    return _MODELS["mobilefacenet"]


def lfw_people(data_dir: Path, count: int, min_images: int = 3) -> list[tuple[str, list[Path]]]:
    """The first ``count`` LFW people (by folder name) with at least ``min_images`` photos."""
    root = data_dir / "lfw" / "images"
    if not root.is_dir():
        pytest.skip(f"LFW images not found at {root}")
    out = []
    for folder in sorted(root.iterdir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= min_images:
            out.append((folder.name.replace("_", " "), images))
            if len(out) == count:
                break
    return out


def blank_png(path: Path, size: int = 160) -> Path:
    """A plain grey picture: a valid image with no face in it."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MOBILEFACE_DATA"] = str(data_dir)
    env.pop("MOBILEFACE_API_KEY", None)
    env.pop("MOBILEFACE_MODEL", None)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mobileface", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
    )


class Server:
    """``mobileface serve`` in a subprocess, on 127.0.0.1 and a free port."""

    def __init__(
        self,
        db: Path,
        model: Path,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.db, self.model, self.args = db, model, args
        self.env = cli_env(data_dir, **(env or {}))
        self.log = log or db.with_suffix(".log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Server:
        import httpx

        command = [
            sys.executable, "-m", "mobileface", "serve", "--db", str(self.db),
            "--model", str(self.model), "--port", str(self.port), "--log-level", "warning",
            *self.args,
        ]  # fmt: skip
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log and not log.closed:
            log.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
