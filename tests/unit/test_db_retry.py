"""`retry_when_locked`: SQLite's immediate "database is locked" is retried; nothing else is."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from weightyard import db
from weightyard.db import create_engine, retry_when_locked


@dataclass
class Locked:
    """A database whose exclusive lock `blocker` holds, the hub's engine on it, and an insert that does not
    wait for the lock: SQLite answers it "database is locked" at once, as it does in the cases the busy
    timeout does not cover. `tries` counts the inserts attempted."""

    engine: sa.Engine
    impatient: sa.Engine
    blocker: sqlite3.Connection
    tries: list[int] = field(default_factory=list)

    def insert(self) -> None:
        self.tries.append(1)
        with self.impatient.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Locked]:
    path = tmp_path / "locked.db"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE t (x INTEGER)")
    blocker.execute("BEGIN EXCLUSIVE")
    url = f"sqlite:///{path}"
    state = Locked(create_engine(url), sa.create_engine(url, connect_args={"timeout": 0}), blocker)
    try:
        yield state
    finally:
        blocker.close()
        state.engine.dispose()
        state.impatient.dispose()


def test_a_transaction_that_meets_a_locked_database_at_once_starts_over(locked: Locked) -> None:
    def release_after_first_failure() -> None:
        try:
            locked.insert()
        finally:
            if locked.blocker.in_transaction:
                locked.blocker.execute("COMMIT")

    retry_when_locked(locked.engine, release_after_first_failure)

    assert len(locked.tries) == 2
    with locked.impatient.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1


def test_a_lock_that_stays_is_raised_after_the_last_try(
    locked: Locked, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_LOCKED_FIRST_WAIT_S", 0.001)

    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        retry_when_locked(locked.engine, locked.insert)

    assert len(locked.tries) == db.LOCKED_TRIES


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
