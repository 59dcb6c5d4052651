"""Where files live: the shared data set, the user cache, and model files with pinned hashes.

Model files are resolved in this order: an explicit path, an environment variable, the user
cache (``MOBILEFACE_CACHE`` or ``~/.cache/mobileface``), then a download from a pinned URL
whose SHA-256 is checked before the file is used. Nothing is downloaded when a local copy
exists, so offline machines work once the file is in place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFileError

DATA_ENV = "MOBILEFACE_DATA"
CACHE_ENV = "MOBILEFACE_CACHE"


def data_dir() -> Path:
    """The shared data set: ``MOBILEFACE_DATA``, else ``../shared/data`` from the working dir."""
    env = os.environ.get(DATA_ENV)
    return Path(env).absolute() if env else (Path.cwd().parent / "shared" / "data")


def cache_dir() -> Path:
    """The user cache for downloaded model files."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mobileface"


@dataclass(frozen=True)
class RemoteFile:
    """A file that can be fetched: where from, its checksum, and where users may point to it."""

    filename: str
    url: str
    sha256: str
    env_var: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_file(
    remote: RemoteFile, explicit: str | Path | None = None, download: bool = True
) -> Path:
    """Find ``remote`` locally or fetch it; see the module docstring for the order."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such file")
        return path
    if remote.env_var and os.environ.get(remote.env_var):
        path = Path(os.environ[remote.env_var])
        if not path.is_file():
            raise ModelFileError(f"{path} (from ${remote.env_var}): no such file")
        return path
    cached = cache_dir() / remote.filename
    if cached.is_file():
        return cached
    if not download:
        raise ModelFileError(
            f"{remote.filename} not found: pass its path, set ${remote.env_var or CACHE_ENV}, "
            f"or place it in {cache_dir()}"
        )
    return download_file(remote, cached)


def download_file(remote: RemoteFile, destination: Path) -> Path:
    """Download ``remote`` to ``destination`` atomically, refusing a checksum mismatch."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{remote.filename}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=60) as src:
            shutil.copyfileobj(src, out)
        actual = sha256_of(Path(tmp))
        if actual != remote.sha256:
            raise ModelFileError(
                f"{remote.url}: SHA-256 {actual} does not match the pinned {remote.sha256}"
            )
        os.replace(tmp, destination)
    except OSError as exc:
        raise ModelFileError(
            f"could not download {remote.filename} from {remote.url}: {exc}; "
            f"without internet, pass the file's path or set ${remote.env_var or CACHE_ENV}"
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return destination
