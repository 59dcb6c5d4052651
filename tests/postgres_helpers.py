"""A real PostgreSQL server with pgvector for the tests: a throwaway cluster on 127.0.0.1,
started once per test session by ``scripts/postgres.sh`` and removed afterwards.

Fixtures (import them into a test module to use them):

- ``postgres``: the running :class:`Cluster` (session-wide); skips, saying why, where
  PostgreSQL, pgvector or psycopg is missing (``bash scripts/postgres.sh install`` installs
  the first two; ``bash scripts/test.sh`` runs it).
- ``gallery_db``: a new gallery location per test, once per backend: a SQLite path, and a
  ``postgresql://`` URL of a fresh database.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "postgres.sh"


def missing() -> str | None:
    """Why the PostgreSQL tests cannot run here, or ``None`` when they can."""
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} not installed (pip install 'mobileface[postgres]')"
    initdb = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if initdb is None:
        return "PostgreSQL is not installed (bash scripts/postgres.sh install)"
    pg_config = Path(initdb).resolve().parent / "pg_config"
    if not pg_config.exists():
        return f"{pg_config} missing (bash scripts/postgres.sh install)"
    share = subprocess.run(
        [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not (Path(share) / "extension" / "vector.control").is_file():
        return (
            "pgvector is not installed in PostgreSQL (bash scripts/postgres.sh install builds it "
            "from ../shared/vendor/pgvector-0.8.6.tar.gz)"
        )
    return None


class Cluster:
    """A throwaway PostgreSQL cluster (``scripts/postgres.sh start|restart|stop|remove``)."""

    def __init__(self, settings: str = "") -> None:
        # Not under pytest's tmp_path: its 0700 parents would keep the `postgres` OS user out.
        self.dir = Path(tempfile.mkdtemp(prefix="mobileface-pg-"))
        self.settings = settings
        self.url = ""

    def _run(self, *args: str) -> str:
        env = dict(os.environ, PG_SETTINGS=self.settings)
        out = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=180
        )
        if out.returncode != 0:
            raise RuntimeError(f"postgres.sh {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout.strip()

    def start(self) -> Cluster:
        self.url = self._run("start", str(self.dir)).splitlines()[-1]
        return self

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server back at once."""
        self._run("restart", str(self.dir))

    def stop(self) -> None:
        self._run("stop", str(self.dir))

    def remove(self) -> None:
        self._run("remove", str(self.dir))

    def database_url(self, name: str, password: str | None = None) -> str:
        base, _, _ = self.url.rpartition("/")
        if password is not None:
            base = base.replace("mobileface@", f"mobileface:{password}@")
        return f"{base}/{name}"

    def create_database(self, password: str | None = None) -> str:
        """A new, empty database; its URL (with ``password`` in it, which trust auth
        ignores: for checking that passwords are never shown)."""
        import psycopg

        name = f"g_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.database_url(name, password)


@pytest.fixture(scope="session")
def postgres() -> Cluster:
    reason = missing()
    if reason:
        pytest.skip(reason)
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(
    # The PostgreSQL variants start a server (about half a minute with its shutdown): they run
    # in the full suite, not in the quick `-m "not slow"` run.
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]
)
def gallery_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new gallery: a SQLite file path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "gallery.db")
    return request.getfixturevalue("postgres").create_database()
