"""Database access: one engine per hub, schema managed by Alembic migrations."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from weightyard.db import tables

__all__ = [
    "SchemaState",
    "create_engine",
    "insert_ignore",
    "migrate",
    "retry_when_locked",
    "row_locked_transaction",
    "schema_state",
    "stored_setting",
    "tables",
    "transaction",
    "utcnow",
]

_IMMEDIATE = "weightyard_immediate"

_MIGRATIONS = Path(__file__).parent / "migrations"

# The largest id a row's integer primary key can hold on every database (INTEGER is 32 bits on PostgreSQL):
# an id from a request beyond it names nothing, and must not reach a query that would fail on it.
MAX_ROW_ID = 2**31 - 1

# Connections each process keeps open, and how many more it may open for a burst (closed when returned). A
# request uses one at a time (two when a read nests), and the server answers up to 40 at once in its thread
# pool: with SQLAlchemy's default of 5, a worker under 64 clients opened and closed a PostgreSQL connection,
# a new server process each, for a good share of its requests. PostgreSQL's `max_connections` must cover
# (POOL_SIZE + POOL_OVERFLOW) per process (docs/scale.md).
POOL_SIZE = 16
POOL_OVERFLOW = 8

# A pooled PostgreSQL connection idle this long is pinged before it is used again.
_PING_AFTER_IDLE_S = 5.0
_IDLE_SINCE = "weightyard_idle_since"

# The PostgreSQL advisory lock key that `transaction()` takes (any constant; "wyard" in ASCII).
_WRITE_LOCK = 0x7779617264


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, and `BEGIN IMMEDIATE` for `transaction()`.

    `BEGIN IMMEDIATE` takes the write lock at the start of a write transaction, so two concurrent commits on
    one branch serialise instead of failing with "database is locked" when one upgrades its read lock.
    Reads (`engine.connect()`) stay deferred and never wait for writers, thanks to WAL.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )

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
    # Reads run in autocommit: a read block (`engine.connect()`) then costs its statements alone, without a
    # BEGIN and a ROLLBACK round trip each, and psycopg keeps its prepared statements (a ROLLBACK clears
    # them). Each statement sees what was committed when it started, as under READ COMMITTED inside a
    # transaction, so no reader sees less than before. Writes take a real transaction: `transaction()` and
    # `row_locked_transaction()` switch their connection back before they begin.
    engine = sa.create_engine(
        url, isolation_level="AUTOCOMMIT", pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
    )

    # A pooled connection that sat idle may have been dropped (a server restart, an idle timeout): it is
    # pinged before use, and replaced when the ping fails. One in steady use is not pinged: a ping at every
    # checkout was one round trip in three of a metadata request's (bench/scale.py).
    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < _PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError("the idle connection is gone") from exc

    return engine


def _alembic_config() -> Any:
    # Imported here: alembic is only needed at start-up, and every CLI command would pay for it.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against the migrations this version of Weightyard ships."""

    current: str | None
    head: str
    known: bool  # False: written by a newer Weightyard, whose migrations this one does not have

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_state(engine: sa.Engine) -> SchemaState:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or any(script.revision == current for script in scripts.walk_revisions())
    head = scripts.get_current_head()
    assert head is not None
    return SchemaState(current, head, known)


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to the latest migration (or to `revision`), in one write transaction.

    On SQLite the transaction is `BEGIN IMMEDIATE`: a second process migrating at the same time waits for the
    first and then finds nothing left to do, instead of failing with "database is locked".
    """
    from alembic import command

    config = _alembic_config()

    def upgrade() -> None:
        with transaction(engine) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    retry_when_locked(engine, upgrade)


# How often `retry_when_locked` tries in all, and how long it waits before the second try (doubled each time).
LOCKED_TRIES = 5
_LOCKED_FIRST_WAIT_S = 0.05


def retry_when_locked(engine: sa.Engine, work: Callable[[], None]) -> None:
    """Run `work`, one whole transaction, again when SQLite answers "database is locked" at once.

    The busy timeout makes a writer wait for another, but SQLite gives up without waiting in a few cases: a
    file's first switch to WAL while another process opens it, a reader that must run the WAL's recovery. A
    fresh database that several processes migrate at the same moment can meet them (seen once in this
    project's test runs: three processes migrating one new file). The transaction was rolled back, so the
    work can simply start over; the last failure is raised. Other databases, and other errors, are not
    retried.
    """
    wait = _LOCKED_FIRST_WAIT_S
    for attempt in range(1, LOCKED_TRIES + 1):
        try:
            work()
            return
        except sa.exc.OperationalError as exc:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(exc.orig)
            if not locked or attempt == LOCKED_TRIES:
                raise
        time.sleep(wait)
        wait *= 2


def utcnow() -> datetime.datetime:
    """The current UTC time as a naive datetime, the form every table stores."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


def insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, object]]) -> int:
    """Insert rows, skipping those that a primary key or unique constraint already holds (another writer
    stored the same thing); returns how many were inserted. This, not a look before inserting, is how a
    writer learns that the row exists: the constraint decides, however many writers race."""
    if not rows:
        return 0
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return _inserted(conn, sqlite_insert(table).on_conflict_do_nothing(), rows)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return _inserted(conn, pg_insert(table).on_conflict_do_nothing(), rows)
    key = [c.name for c in table.primary_key.columns]
    inserted = 0
    for row in rows:
        where = [table.c[name] == row[name] for name in key]
        if conn.execute(sa.select(table.c[key[0]]).where(*where)).first() is None:
            conn.execute(sa.insert(table).values(**row))
            inserted += 1
    return inserted


def stored_setting(engine: sa.Engine, key: str, make: Callable[[], str]) -> str:
    """A hub-wide value kept in the `settings` table (a secret, a key), made by `make` on first use. The first
    writer's value wins, and every process reads that one, however many start at once."""
    query = sa.select(tables.settings.c.value).where(tables.settings.c.key == key)
    with engine.connect() as conn:
        value = conn.execute(query).scalar()
    if value is None:
        with transaction(engine) as conn:
            insert_ignore(conn, tables.settings, [{"key": key, "value": make()}])
            value = conn.execute(query).scalar_one()
    return str(value)


def _inserted(conn: sa.Connection, statement: sa.Insert, rows: list[dict[str, object]]) -> int:
    # One statement executed over all the rows: SQLAlchemy compiles it once (then from its cache) and sends it
    # as multi-row INSERTs in pages that stay under both databases' limits on bound parameters; asked to
    # preserve the row count, it sums each page's, which is exact on sqlite3 and psycopg alike. A statement
    # built with `.values(rows)` was compiled anew on every call: 70 ms of CPU for a xorb's 1,024 chunk rows,
    # against 9 ms this way.
    return int(conn.execute(statement.execution_options(preserve_rowcount=True), rows).rowcount)


def _transactional(connection: sa.Connection) -> None:
    # Back from the engine's autocommit (see `create_engine`) to a real transaction; the pool restores
    # autocommit when the connection is returned.
    if connection.dialect.name == "postgresql":
        connection.execution_options(isolation_level="READ COMMITTED")


@contextmanager
def queue_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write of a job queue's rows (scan jobs, whole-copy jobs): on SQLite a `transaction` (BEGIN IMMEDIATE:
    a deferred one that reads, then writes, can fail when another writer got in between); on PostgreSQL a
    `row_locked_transaction`, since the queues order their writers by row locks alone."""
    if engine.dialect.name == "sqlite":
        with transaction(engine) as conn:
            yield conn
    else:
        with row_locked_transaction(engine) as conn:
            yield conn


@contextmanager
def row_locked_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that does not take the hub-wide write lock: for writers that order themselves by row
    locks alone (`SELECT … FOR UPDATE SKIP LOCKED`, the scan queue on PostgreSQL)."""
    with engine.connect() as connection:
        _transactional(connection)
        with connection.begin():
            yield connection


@contextmanager
def transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction: committed when the block ends, rolled back when it raises.

    Write transactions run one at a time on every database, as `BEGIN IMMEDIATE` makes them on SQLite: the
    code reads, decides and writes in one transaction (create-if-missing, compare-and-swap) and relies on no
    other writer slipping in between. On PostgreSQL a transaction-level advisory lock does it, waiting at most
    as long as SQLite's busy timeout.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        _transactional(connection)
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL lock_timeout = '30s'")
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")
            yield connection
