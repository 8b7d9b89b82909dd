"""Database access: one engine per hub, schema managed by Alembic migrations."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from weightyard.db import tables

__all__ = ["create_engine", "migrate", "tables", "transaction", "utcnow"]

_IMMEDIATE = "weightyard_immediate"

_MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, and `BEGIN IMMEDIATE` for `transaction()`.

    `BEGIN IMMEDIATE` takes the write lock at the start of a write transaction, so two concurrent commits on
    one branch serialise instead of failing with "database is locked" when one upgrades its read lock.
    Reads (`engine.connect()`) stay deferred and never wait for writers, thanks to WAL.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            immediate = connection.get_execution_options().get(_IMMEDIATE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the latest migration."""
    # Imported here: alembic is only needed at start-up, and every CLI command would pay for it.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def utcnow() -> datetime.datetime:
    """The current UTC time as a naive datetime, the form every table stores."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


@contextmanager
def transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction: committed when the block ends, rolled back when it raises."""
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            yield connection
