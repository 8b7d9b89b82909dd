"""The scan queue: scans still to run, kept in the database so that any server process can run any of them.

A job is one content (sha256) under one name key, for one scanner version. It is queued when the content's
upload completes and when a commit names content without a current report; a server process claims it
(atomically: `FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), holds it under a lease
that it renews while the scan runs, and deletes it once the report is stored. A job whose worker died (its
lease ran out) is claimed again, at most `MAX_ATTEMPTS` times in all; a job that cannot be done is kept as
"failed", with the error a commit naming the content is answered.

The queue's writes need no hub-wide write lock: every one of them is an idempotent insert or a conditional
update of one row, so on PostgreSQL they run in plain transactions, and only row locks order claims.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.db import insert_ignore, queue_transaction, tables, utcnow
from weightyard.errors import WeightyardError
from weightyard.scan import SCANNER_VERSION

QUEUED, RUNNING, FAILED = "queued", "running", "failed"
# Claims of one job in all (a worker that died during the scan counts): then it is failed.
MAX_ATTEMPTS = 3
# Seconds before a job whose scan raised is tried again, times its attempts so far.
RETRY_DELAY_S = 2
# Lookups name at most this many digests at once (bound on query parameters).
_BATCH = 500

Key = tuple[str, str]  # (sha256, name key)

_jobs = tables.scan_jobs


@dataclass(frozen=True)
class Job:
    id: int
    sha256: str
    name_key: str
    path: str
    attempts: int


@dataclass(frozen=True)
class Failure:
    """Why a job failed: the error a commit naming its content gets (as the scan itself would have raised)."""

    code: str
    status: int
    message: str

    def error(self) -> WeightyardError:
        error = WeightyardError(self.message)
        error.code, error.status = self.code, self.status
        return error


@dataclass(frozen=True)
class Progress:
    pending: set[Key]  # queued or running
    failed: dict[Key, Failure]
    unqueued: set[Key]  # neither a report nor a job (the report was removed since)


def worker_id() -> str:
    """A name for this process's claims, unique across hosts and restarts."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


class ScanQueue:
    def __init__(self, engine: sa.Engine, lease_s: int) -> None:
        self._engine = engine
        self._lease = datetime.timedelta(seconds=lease_s)

    def write(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A write transaction for the queue's tables and the reports its jobs produce."""
        return queue_transaction(self._engine)

    # -- enqueue ---------------------------------------------------------------------------------------
    def enqueue(self, work: dict[Key, str], retry_failed_after: datetime.timedelta | None = None) -> None:
        """Queue a job for each (sha256, name key) → path without a current report; an existing job is kept
        (idempotent). A failed one is queued again once it has been failed for `retry_failed_after`."""
        if not work:
            return
        with self.write() as conn:
            reported = self._reported(conn, work)
            todo = {key: path for key, path in work.items() if key not in reported}
            now = utcnow()
            if retry_failed_after is not None and todo:
                failed = [job_id for job_id, state, _ in self._states(conn, todo).values() if state == FAILED]
                if failed:
                    conn.execute(
                        sa.update(_jobs)
                        .where(
                            _jobs.c.id.in_(failed),
                            _jobs.c.state == FAILED,
                            # a failed job's lease_until is when it failed
                            sa.or_(
                                _jobs.c.lease_until.is_(None), _jobs.c.lease_until <= now - retry_failed_after
                            ),
                        )
                        .values(state=QUEUED, attempts=0, lease_until=None, claimed_by=None, error=None)
                    )
            insert_ignore(
                conn,
                _jobs,
                [
                    {
                        "sha256": sha256,
                        "name_key": key,
                        "scanner_version": SCANNER_VERSION,
                        "path": path,
                        "state": QUEUED,
                        "attempts": 0,
                        "lease_until": None,
                        "claimed_by": None,
                        "error": None,
                        "created_at": now,
                    }
                    for (sha256, key), path in sorted(todo.items())
                ],
            )

    @staticmethod
    def _reported(conn: sa.Connection, keys: Iterable[Key]) -> set[Key]:
        """The keys that have a report of the current scanner."""
        wanted = set(keys)
        reports = tables.scan_reports
        found: set[Key] = set()
        for batch in _chunks(sorted({sha for sha, _ in wanted})):
            rows = conn.execute(
                sa.select(reports.c.sha256, reports.c.name_key).where(
                    reports.c.sha256.in_(batch), reports.c.scanner_version == SCANNER_VERSION
                )
            ).all()
            found.update((row.sha256, row.name_key) for row in rows)
        return found & wanted

    @staticmethod
    def _states(conn: sa.Connection, keys: Iterable[Key]) -> dict[Key, tuple[int, str, str | None]]:
        """The jobs of `keys` that exist: id, state and error of each."""
        wanted = set(keys)
        found: dict[Key, tuple[int, str, str | None]] = {}
        for batch in _chunks(sorted({sha for sha, _ in wanted})):
            rows = conn.execute(
                sa.select(_jobs.c.id, _jobs.c.sha256, _jobs.c.name_key, _jobs.c.state, _jobs.c.error).where(
                    _jobs.c.sha256.in_(batch), _jobs.c.scanner_version == SCANNER_VERSION
                )
            ).all()
            found.update({(row.sha256, row.name_key): (int(row.id), row.state, row.error) for row in rows})
        return {key: found[key] for key in wanted & found.keys()}

    # -- progress --------------------------------------------------------------------------------------
    def progress(self, keys: Iterable[Key]) -> Progress:
        """Where the scans of `keys` stand (done ones are left out)."""
        wanted = set(keys)
        with self._engine.connect() as conn:
            left = wanted - self._reported(conn, wanted)
            states = self._states(conn, left)
        failed = {
            key: Failure(**json.loads(error or "{}"))
            for key, (_, state, error) in states.items()
            if state == FAILED
        }
        return Progress(pending=set(states) - set(failed), failed=failed, unqueued=left - set(states))

    # -- claims ----------------------------------------------------------------------------------------
    def has_work(self) -> bool:
        """Whether some job may be claimed now: a cheap read, so an idle worker takes no write lock."""
        with self._engine.connect() as conn:
            return (
                conn.execute(sa.select(_jobs.c.id).where(self._claimable(utcnow())).limit(1)).first()
                is not None
            )

    @staticmethod
    def _claimable(now: datetime.datetime) -> sa.ColumnElement[bool]:
        free = sa.or_(_jobs.c.lease_until.is_(None), _jobs.c.lease_until <= now)
        return sa.and_(
            _jobs.c.scanner_version == SCANNER_VERSION,
            _jobs.c.state.in_((QUEUED, RUNNING)),
            free,
            _jobs.c.attempts < MAX_ATTEMPTS,
        )

    def claim(self, worker: str, limit: int = 1, keys: Collection[Key] | None = None) -> list[Job]:
        """Take up to `limit` of the oldest claimable jobs (of `keys` only, when given) for `worker`, under a
        lease. Two workers never hold one job: the rows are locked (PostgreSQL, skipping rows that another
        claim holds) or the whole claim is one write transaction (SQLite)."""
        now = utcnow()
        with self.write() as conn:
            self._fail_abandoned(conn, now)
            pick = sa.select(_jobs.c.id).where(self._claimable(now))
            if keys is not None:
                pick = pick.where(sa.tuple_(_jobs.c.sha256, _jobs.c.name_key).in_(sorted(keys)[:_BATCH]))
            pick = pick.order_by(_jobs.c.id).limit(limit).with_for_update(skip_locked=True)
            rows = conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.id.in_(pick))
                .values(
                    state=RUNNING,
                    attempts=_jobs.c.attempts + 1,
                    lease_until=now + self._lease,
                    claimed_by=worker,
                )
                .returning(_jobs.c.id, _jobs.c.sha256, _jobs.c.name_key, _jobs.c.path, _jobs.c.attempts)
            ).all()
        jobs = [Job(int(row.id), row.sha256, row.name_key, row.path, int(row.attempts)) for row in rows]
        return sorted(jobs, key=lambda job: job.id)

    def _fail_abandoned(self, conn: sa.Connection, now: datetime.datetime) -> None:
        """Jobs whose worker stopped (lease over) on every attempt: failed, never a verdict."""
        failure = Failure(
            "ScanFailed",
            500,
            f"the scan did not finish: the process running it stopped {MAX_ATTEMPTS} times",
        )
        conn.execute(
            sa.update(_jobs)
            .where(
                _jobs.c.state == RUNNING,
                _jobs.c.lease_until <= now,
                _jobs.c.attempts >= MAX_ATTEMPTS,
            )
            .values(state=FAILED, claimed_by=None, lease_until=now, error=json.dumps(failure.__dict__))
        )

    def prune(self) -> None:
        """Drop the jobs of other scanner versions that no one holds: after an upgrade nothing claims them
        (a process of the other version still waiting on one queues it again)."""
        now = utcnow()
        other = sa.and_(
            _jobs.c.scanner_version != SCANNER_VERSION,
            sa.or_(_jobs.c.state != RUNNING, _jobs.c.lease_until <= now),
        )
        with self._engine.connect() as conn:  # a read first: most sweeps find none, and take no write lock
            if conn.execute(sa.select(_jobs.c.id).where(other).limit(1)).first() is None:
                return
        with self.write() as conn:
            conn.execute(sa.delete(_jobs).where(other))

    def renew(self, worker: str, ids: Iterable[int]) -> None:
        """Extend the leases `worker` holds on these jobs (while their scans run)."""
        held = sorted(ids)
        if not held:
            return
        with self.write() as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.id.in_(held), _jobs.c.claimed_by == worker, _jobs.c.state == RUNNING)
                .values(lease_until=utcnow() + self._lease)
            )

    @staticmethod
    def finish(conn: sa.Connection, jobs: Iterable[Job]) -> None:
        """These jobs' reports are stored (in the same transaction, `conn`): they are done, whoever holds them
        now (the report is the same)."""
        ids = sorted(job.id for job in jobs)
        if ids:
            conn.execute(sa.delete(_jobs).where(_jobs.c.id.in_(ids)))

    def release(self, worker: str, jobs: Iterable[Job]) -> None:
        """Give back jobs claimed but not started (the process is stopping): queued again, no attempt used."""
        ids = sorted(job.id for job in jobs)
        if not ids:
            return
        with self.write() as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.id.in_(ids), _jobs.c.claimed_by == worker, _jobs.c.state == RUNNING)
                .values(state=QUEUED, attempts=_jobs.c.attempts - 1, lease_until=None, claimed_by=None)
            )

    def fail(self, worker: str, job: Job, failure: Failure, final: bool) -> None:
        """The scan raised: try again later, or (`final`, or out of attempts) keep the job as failed."""
        if final or job.attempts >= MAX_ATTEMPTS:
            values: dict[str, object] = {
                "state": FAILED,
                "claimed_by": None,
                "lease_until": utcnow(),
                "error": json.dumps(failure.__dict__),
            }
        else:
            later = utcnow() + datetime.timedelta(seconds=RETRY_DELAY_S * job.attempts)
            values = {"state": QUEUED, "claimed_by": None, "lease_until": later}
        with self.write() as conn:
            conn.execute(
                sa.update(_jobs).where(_jobs.c.id == job.id, _jobs.c.claimed_by == worker).values(**values)
            )
