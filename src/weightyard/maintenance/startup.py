"""Start-up checks of the data folder and the database, each failing with one line that says what to do.

Only `weightyard serve` and `weightyard init` create a data folder; every other command that works on one
refuses a folder that holds no hub (`DataFolderMissing`), so a typo in `--data` never creates a second hub
whose tokens the running one rejects. Initialisation (schema upgrade, secrets, the admin user and token)
runs under an exclusive lock on the folder, so several processes started at once on a fresh folder wait for
each other instead of failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from weightyard.config import Settings

DATABASE_FILE = "weightyard.db"
LOCK_FILE = ".lock"
# What a data folder holds besides its database: if any of it is there without the database, the database
# was deleted or moved, and starting afresh would orphan all of it.
_LEFTOVERS = ("admin-token", "blobs", "xorbs")
# Exit statuses of the CLI (docs/operations.md): 2 usage or input error, 3 the hub cannot start.
EXIT_USAGE = 2
EXIT_CANNOT_START = 3


class StartupError(Exception):
    """The hub cannot start on this data folder or database; the message says why and what to do."""

    exit_code = EXIT_CANNOT_START


class DataFolderMissing(StartupError):
    """A command that needs an existing hub was pointed at a folder that holds none."""

    exit_code = EXIT_USAGE


def uses_default_database(settings: Settings) -> bool:
    return settings.database_url is None


def check_data_folder(settings: Settings, create: bool) -> None:
    """Refuse a data folder the hub cannot use; create it (when `create`) if it does not exist yet."""
    data = settings.data.resolve()
    if not uses_default_database(settings):
        _make_folder(data)
        _check_writable(data)
        return
    database = data / DATABASE_FILE
    if not database.exists():
        if not create:
            raise DataFolderMissing(
                f"no Weightyard data folder at {data} (there is no {database}): pass --data DIR or set "
                "WEIGHTYARD_DATA to the hub's folder, or create one with `weightyard init`"
            )
        leftovers = [name for name in _LEFTOVERS if _holds_files(data / name)]
        if leftovers:
            raise StartupError(
                f"{database} is missing but {data} still holds {', '.join(leftovers)}: the database was "
                "deleted or moved. Restore it from a backup (see docs/operations.md) "
                "or start on an empty folder"
            )
    _make_folder(data)
    _check_writable(data)
    for name in ("blobs", "xorbs"):
        if (data / name).is_dir():
            _check_writable(data / name)
    if database.exists():
        try:
            with open(database, "r+b"):
                pass
        except OSError as exc:
            raise StartupError(f"the database {database} is not writable ({exc.strerror})") from None


def _holds_files(path: Path) -> bool:
    if path.is_file():
        return True
    if not path.is_dir():
        return False
    return any(item.is_file() and ".tmp" not in item.parts for item in path.rglob("*"))


def _make_folder(data: Path) -> None:
    if data.exists() and not data.is_dir():
        raise StartupError(f"the data folder {data} is a file, not a folder")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create the data folder {data} ({exc.strerror})") from None


def _check_writable(folder: Path) -> None:
    probe = folder / f".write-check-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"the data folder {folder} is not writable ({exc.strerror})") from None


@contextlib.contextmanager
def folder_lock(settings: Settings) -> Iterator[None]:
    """Hold an exclusive lock on the data folder: one process at a time initialises or upgrades it."""
    path = settings.data.resolve() / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_database(engine: sa.Engine, where: str) -> None:
    """Refuse a database SQLite cannot read or whose quick check finds damage."""
    try:
        with engine.connect() as conn:
            if engine.dialect.name != "sqlite":
                conn.execute(sa.text("SELECT 1"))
                return
            problems = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check")]
    except sa.exc.DBAPIError as exc:
        raise StartupError(
            f"cannot open the database {where}: {exc.orig}. Restore it from a backup (see docs/operations.md)"
        ) from None
    if problems != ["ok"]:
        raise StartupError(
            f"the database {where} is damaged ({'; '.join(problems[:3])}). "
            "Restore it from a backup (see docs/operations.md)"
        )


def upgrade_schema(engine: sa.Engine, where: str, automatic: bool) -> None:
    """Bring the schema up to date (`automatic`: SQLite, under the folder lock), or say why it cannot be."""
    from weightyard.db import migrate, schema_state

    state = schema_state(engine)
    if state.up_to_date:
        return
    if not state.known:
        raise StartupError(
            f"the database {where} has schema {state.current}, newer than this version of Weightyard "
            f"knows (up to {state.head}): upgrade Weightyard"
        )
    if not automatic:
        raise StartupError(
            f"the database {where} has schema {state.current or 'none'}, not {state.head}: "
            "run `weightyard db upgrade` first"
        )
    migrate(engine)
