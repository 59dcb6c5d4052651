"""Settings of the HTTP service, and the rule that decides whether it needs an API key."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from mobileface.errors import DataFormatError
from mobileface.image import DEFAULT_MAX_PIXELS

API_KEY_ENV = "MOBILEFACE_API_KEY"
"""Environment variable holding the API key (several may be given, separated by commas)."""

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


@dataclass
class ServiceConfig:
    """Everything :func:`~mobileface.service.create_app` needs.

    ``require_auth=None`` means: required whenever ``host`` is not a loopback address.
    """

    db: str | Path  # a SQLite file path or a postgresql:// URL
    model: str | None = None
    detector: str = "yunet"
    detector_path: str | None = None
    host: str = "127.0.0.1"
    api_keys: tuple[str, ...] = ()
    require_auth: bool | None = None
    threshold: float | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = 20
    max_top_k: int = 100
    index: str = "auto"
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    threads: int = 1

    @property
    def auth_required(self) -> bool:
        if self.require_auth is None:
            return not is_loopback(self.host) or bool(self.api_keys)
        return self.require_auth

    def check(self) -> None:
        """Refuse settings that would expose the service without a key."""
        if self.auth_required and not self.api_keys:
            where = (
                f"binding to {self.host} (not loopback) exposes the service"
                if not is_loopback(self.host)
                else "authentication is required"
            )
            raise DataFormatError(
                f"{where}: set ${API_KEY_ENV} or pass --api-key-file, or pass --no-auth to "
                "serve without authentication"
            )
        if self.max_body_bytes <= 0 or self.max_pixels <= 0 or self.max_images <= 0:
            raise DataFormatError("size limits must be positive")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_api_keys(key_file: str | Path | None = None, env: bool = True) -> tuple[str, ...]:
    """API keys from ``key_file`` (one per line, ``#`` comments) and ``$MOBILEFACE_API_KEY``."""
    keys: list[str] = []
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise DataFormatError(f"{path}: cannot read API key file: {exc}") from None
        keys += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if not keys:
            raise DataFormatError(f"{path}: no API key in the file")
    if env and os.environ.get(API_KEY_ENV):
        keys += [k.strip() for k in os.environ[API_KEY_ENV].split(",") if k.strip()]
    short = [k for k in keys if len(k) < 16]
    if short:
        raise DataFormatError("API keys must be at least 16 characters long")
    return tuple(dict.fromkeys(keys))
