"""`retry_when_locked`: SQLite's immediate "database is locked" is retried; nothing else is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from weightyard import db
from weightyard.db import create_engine, retry_when_locked


def _locked_database(tmp_path: Path) -> tuple[str, sqlite3.Connection]:
    """A database file and a connection that holds its exclusive lock."""
    path = tmp_path / "locked.db"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE t (x INTEGER)")
    blocker.execute("BEGIN EXCLUSIVE")
    return f"sqlite:///{path}", blocker


def test_a_transaction_that_meets_a_locked_database_at_once_starts_over(tmp_path: Path) -> None:
    url, blocker = _locked_database(tmp_path)
    engine = create_engine(url)
    # An engine that does not wait on the lock: SQLite answers "database is locked" at once, as it does in the
    # cases the busy timeout does not cover.
    impatient = sa.create_engine(url, connect_args={"timeout": 0})
    tries: list[int] = []

    def work() -> None:
        tries.append(1)
        with impatient.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        # Never reached on the first try: the lock is held.

    def release_after_first_failure() -> None:
        try:
            work()
        finally:
            if blocker.in_transaction:
                blocker.execute("COMMIT")

    try:
        retry_when_locked(engine, release_after_first_failure)
        assert len(tries) == 2
        with impatient.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    finally:
        blocker.close()
        engine.dispose()
        impatient.dispose()


def test_a_lock_that_stays_is_raised_after_the_last_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_LOCKED_FIRST_WAIT_S", 0.001)
    url, blocker = _locked_database(tmp_path)
    engine = create_engine(url)
    impatient = sa.create_engine(url, connect_args={"timeout": 0})
    tries: list[int] = []

    def work() -> None:
        tries.append(1)
        with impatient.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")

    try:
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            retry_when_locked(engine, work)
        assert len(tries) == db.LOCKED_TRIES
    finally:
        blocker.close()
        engine.dispose()
        impatient.dispose()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    tries: list[int] = []

    def work() -> None:
        tries.append(1)
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT * FROM no_such_table")

    try:
        with pytest.raises(sa.exc.OperationalError, match="no such table"):
            retry_when_locked(engine, work)
        assert len(tries) == 1
    finally:
        engine.dispose()
