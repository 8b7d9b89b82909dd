"""A throwaway PostgreSQL cluster for the tests: Unix socket only, no durability, removed at the end.

The server binaries refuse to run as root, so under root every command runs as the `postgres` user and the
cluster's folders belong to it. `make test` installs the binaries when they are missing; a run without them
fails here, loudly, instead of skipping the PostgreSQL tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

# No durability: the cluster lives for one test session.
_SERVER_OPTIONS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
SUPERUSER = "postgres"
TEMPLATE = "weightyard_template"


def server_binaries() -> Path:
    """The folder of `initdb` and `pg_ctl`: the newest Debian-packaged version, else the ones on PATH."""
    packaged = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name)
    )
    if packaged:
        return packaged[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError(
            "the PostgreSQL tests need the server binaries (initdb, pg_ctl): `make test` installs them "
            "(apt-get install postgresql)"
        )
    return Path(found).parent


class PostgresCluster:
    """One cluster in a fresh temporary folder; `url(name)` is what `WEIGHTYARD_DATABASE_URL` takes."""

    def __init__(self) -> None:
        self._bin = server_binaries()
        self._as_root = os.geteuid() == 0
        # Not under pytest's temporary folders: those are private to the user running the tests.
        self.base = Path(tempfile.mkdtemp(prefix="weightyard-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "socket"
        self._log = self.base / "server.log"
        self._started = False

    def start(self) -> None:
        self.data.mkdir()
        self.socket_dir.mkdir()
        if self._as_root:
            owner = pwd.getpwnam("postgres")
            self.base.chmod(0o755)
            for path in (self.base, self.data, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = " ".join(f"-c {key}={value}" for key, value in _SERVER_OPTIONS.items())
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self._log),
            "-o",
            f"{options} -k {self.socket_dir}",
        )
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (a copy of `template` when given) and return its URL."""
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                clause = f" TEMPLATE {template}" if template else ""
                conn.exec_driver_sql(f"CREATE DATABASE {name}{clause}")
        finally:
            engine.dispose()
        return self.url(name)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self._log.read_text() if self._log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}{log}")
