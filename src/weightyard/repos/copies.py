"""Whole copies of content kept only as xorbs, so plain-HTTP downloads of it run at the speed of a whole blob.

A plain-HTTP client (`curl`, git-lfs, `HF_HUB_DISABLE_XET=1`) downloads through `/resolve`, and content kept
only as xorbs is then rebuilt for every download: every chunk header checked and every chunk re-hashed, and
the bytes copied once more than a whole blob's (docs/xet.md, "Storage model"). So a download of such content,
once the gate allowed it and its response is over, notes its sha256 in memory (no database work inside the
request; not before the end, so that building the copy does not take the cores the download is using);
this process's copy thread then queues a job in the database (one per sha256, whichever process noted it),
and some process's copy thread claims it under a lease, rebuilds the file from its xorbs exactly as a
download does, writes it through the whole-blob writer (fsynced, sha256 compared with the recorded one,
nothing visible before `publish`), and records a `whole_copies` row. From then on `/resolve` serves the whole
blob, as for any content with one; the Xet path (reconstruction, xorb fetches) does not change.

What is a copy: a whole blob with a `whole_copies` row. Uploads reach whole blobs only through
`ContentStore.place`, which deletes the row and any job of its content in its transaction, so an uploaded
blob is never a copy even when the same bytes are in xorbs too. A job is queued, in a write transaction,
only while no whole blob is stored: an upload that places one later deletes the job in its own transaction
(after its object is visible), so a job that finds a whole blob stored can only have been left by a copy
writer that stopped between `publish` and its record, and records that object (it was sealed and checked).

The copies take at most `budget` bytes: recording one evicts the least recently served others, in the same
write transaction, until it fits. Eviction removes the row and then the object under the write lock, as
`weightyard gc` does (an upload of the same content that published it meanwhile finds it gone in its own
transaction and retries), and only of content whose xorbs are recorded: a copy is never the only form.
Serving a copy is noted in memory as well and written as `last_served_at` once a second.

Publish, then record (ContentStore.place's rule): the record transaction checks that the job, the content's
`blobs` row, its Xet file and the object are all still there; otherwise (gc or a deletion took the content
meanwhile) it records nothing, and the object is withdrawn unless an upload recorded the same content.
Two processes may build one copy only when one stalls past its lease (it is renewed during the build): both
write their own scratch files, the second `publish` finds the identical object, and the record is an
idempotent insert, so the duplicate costs work, never correctness.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.db import insert_ignore, queue_transaction, tables, transaction, utcnow
from weightyard.errors import ContentMismatch, StoredContentDamaged, WeightyardError
from weightyard.faults import crash_point
from weightyard.repos.content import ContentStore
from weightyard.repos.scan_jobs import worker_id
from weightyard.storage import BLOBS
from weightyard.xet import CorruptXorb

QUEUED, RUNNING, FAILED = "queued", "running", "failed"
# Claims of one job in all; a failed job stays failed for `RETRY_FAILED_S`, then a download queues it again.
MAX_ATTEMPTS = 3
RETRY_FAILED_S = 3600
# How often each process writes what its downloads noted and looks for jobs.
INTERVAL_S = 1.0
# Downloads noted between two flushes, at most (the rest are noted again by their next download).
_MAX_NOTED = 10_000
# Failures that rebuilding again cannot cure: the stored xorbs are not what their records say.
_DAMAGE = (CorruptXorb, StoredContentDamaged, ContentMismatch)

_log = logging.getLogger("weightyard.copies")
_jobs = tables.copy_jobs
_copies = tables.whole_copies


class _Stopping(Exception):
    """The process is stopping: the copy being written is given up and its job given back."""


@dataclass(frozen=True)
class CopyJob:
    sha256: str
    attempts: int


class WholeCopies:
    """The whole copies of Xet-stored content: noting downloads, the job queue, building and evicting."""

    def __init__(self, engine: sa.Engine, content: ContentStore, budget: int, lease_s: int) -> None:
        self._engine = engine
        self._content = content
        self.budget = budget
        self._lease = datetime.timedelta(seconds=lease_s)
        self._worker = worker_id()
        self._noted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.budget > 0 and self._content.xet

    def note_download(self, sha256: str, size: int) -> None:
        """A plain-HTTP download of `sha256` that passed the gate is over (memory only: called inside the
        request)."""
        if not self.enabled or size == 0 or size > self.budget:
            return
        with self._lock:
            if len(self._noted) < _MAX_NOTED:
                self._noted.add(sha256)

    # -- the background thread ---------------------------------------------------------------------------
    def start_background(self) -> None:
        """Start this process's copy thread (one per process; nothing when copies are off)."""
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="whole-copies", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                self.flush()
                while not self._stop.is_set() and self.run_once():
                    pass
            except Exception:
                _log.exception("whole copies: the background pass failed; the next one tries again")

    def flush(self) -> None:
        """Write what downloads noted: serving times of copies, and jobs for content kept only as xorbs."""
        with self._lock:
            noted, self._noted = self._noted, set()
        if not noted:
            return
        shas = sorted(noted)
        with self._engine.connect() as conn:
            copies = set(
                conn.execute(sa.select(_copies.c.sha256).where(_copies.c.sha256.in_(shas))).scalars()
            )
        if copies:
            with queue_transaction(self._engine) as conn:
                conn.execute(
                    sa.update(_copies)
                    .where(_copies.c.sha256.in_(sorted(copies)))
                    .values(last_served_at=utcnow())
                )
        wanted = [sha for sha in shas if sha not in copies and not self._content.has_whole_blob(sha)]
        if wanted:
            self.enqueue(wanted)

    def enqueue(self, shas: list[str]) -> None:
        """Queue a copy job for each of `shas` that is kept only as xorbs (idempotent; a job failed for
        longer than `RETRY_FAILED_S` is queued again)."""
        files = {sha: self._content.file_by_sha256(sha) for sha in shas}
        now = utcnow()
        with transaction(self._engine) as conn:
            # Under the write lock (module docstring): an upload that places a whole blob after this looks
            # deletes the job in its own transaction.
            todo = [
                sha
                for sha, file in files.items()
                if file is not None and 0 < file.size <= self.budget and not self._content.has_whole_blob(sha)
            ]
            if not todo:
                return
            conn.execute(
                sa.update(_jobs)
                .where(
                    _jobs.c.sha256.in_(todo),
                    _jobs.c.state == FAILED,
                    _jobs.c.lease_until <= now - datetime.timedelta(seconds=RETRY_FAILED_S),
                )
                .values(state=QUEUED, attempts=0, lease_until=None, claimed_by=None, error=None)
            )
            insert_ignore(
                conn,
                _jobs,
                [
                    {
                        "sha256": sha,
                        "state": QUEUED,
                        "attempts": 0,
                        "lease_until": None,
                        "claimed_by": None,
                        "error": None,
                        "created_at": now,
                    }
                    for sha in todo
                ],
            )

    # -- claims --------------------------------------------------------------------------------------------
    @staticmethod
    def _claimable(now: datetime.datetime) -> sa.ColumnElement[bool]:
        return sa.and_(
            _jobs.c.state.in_((QUEUED, RUNNING)),
            sa.or_(_jobs.c.lease_until.is_(None), _jobs.c.lease_until <= now),
            _jobs.c.attempts < MAX_ATTEMPTS,
        )

    def claim(self) -> CopyJob | None:
        """Take the oldest claimable job under a lease; two processes never hold one job at once."""
        now = utcnow()
        with self._engine.connect() as conn:  # a read first: an idle process takes no write lock
            if conn.execute(sa.select(_jobs.c.sha256).where(self._claimable(now)).limit(1)).first() is None:
                return None
        with queue_transaction(self._engine) as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.state == RUNNING, _jobs.c.lease_until <= now, _jobs.c.attempts >= MAX_ATTEMPTS)
                .values(state=FAILED, claimed_by=None, lease_until=now, error="the copy did not finish")
            )
            pick = (
                sa.select(_jobs.c.sha256)
                .where(self._claimable(now))
                .order_by(_jobs.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            row = conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.sha256.in_(pick))
                .values(
                    state=RUNNING,
                    attempts=_jobs.c.attempts + 1,
                    lease_until=now + self._lease,
                    claimed_by=self._worker,
                )
                .returning(_jobs.c.sha256, _jobs.c.attempts)
            ).first()
        return None if row is None else CopyJob(row.sha256, int(row.attempts))

    def _renew(self, job: CopyJob) -> None:
        with queue_transaction(self._engine) as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.sha256 == job.sha256, _jobs.c.claimed_by == self._worker)
                .values(lease_until=utcnow() + self._lease)
            )

    def _release(self, job: CopyJob) -> None:
        """Give a job back unfinished (the process is stopping): queued again, no attempt used."""
        with queue_transaction(self._engine) as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.sha256 == job.sha256, _jobs.c.claimed_by == self._worker)
                .values(state=QUEUED, attempts=_jobs.c.attempts - 1, lease_until=None, claimed_by=None)
            )

    def _fail(self, job: CopyJob, error: BaseException) -> None:
        final = isinstance(error, _DAMAGE) or job.attempts >= MAX_ATTEMPTS
        message = error.message if isinstance(error, WeightyardError) else repr(error)
        now = utcnow()
        values: dict[str, object] = (
            {"state": FAILED, "claimed_by": None, "lease_until": now, "error": json.dumps(message)}
            if final
            else {"state": QUEUED, "claimed_by": None, "lease_until": now + self._lease * job.attempts}
        )
        with queue_transaction(self._engine) as conn:
            conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.sha256 == job.sha256, _jobs.c.claimed_by == self._worker)
                .values(**values)
            )

    # -- building ------------------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Claim one job and build its copy; False when there was none."""
        job = self.claim()
        if job is None:
            return False
        try:
            self.build(job)
        except _Stopping:
            self._release(job)
        except Exception as exc:
            _log.warning("whole copy of %s failed: %s", job.sha256, exc)
            self._fail(job, exc)
        return True

    def build(self, job: CopyJob) -> None:
        """Rebuild the content from its xorbs into a whole blob and record it as a copy (module docstring)."""
        sha256 = job.sha256
        file = self._content.file_by_sha256(sha256)
        if file is None or file.size > self.budget:
            self._drop(job)
            return
        if self._content.has_whole_blob(sha256):
            # Left by a copy writer that stopped after publishing (an upload would have deleted the job).
            self._record(sha256, file.size)
            return
        # Room first, so the disk never holds more than one extra copy.
        with transaction(self._engine) as conn:
            self._evict(conn, self.budget - file.size, keep=sha256)
        writer = self._content.objects.blob_writer(sha256)
        try:
            renewed = time.monotonic()
            for piece in self._content.iter_file(file.terms):
                if self._stop.is_set():
                    raise _Stopping
                writer.write(piece)
                if time.monotonic() - renewed > self._lease.total_seconds() / 3:
                    self._renew(job)
                    renewed = time.monotonic()
            writer.seal(sha256, file.size)
            created = writer.publish()
            crash_point("copy.published")
            try:
                recorded = self._record(sha256, file.size)
            except BaseException:
                if created:
                    self._content.withdraw_blob(sha256)
                raise
            if created and not recorded:
                self._content.withdraw_blob(sha256)
        finally:
            writer.abort()

    def _drop(self, job: CopyJob) -> None:
        with queue_transaction(self._engine) as conn:
            conn.execute(sa.delete(_jobs).where(_jobs.c.sha256 == job.sha256))

    def _record(self, sha256: str, size: int) -> bool:
        """Record the published object as a copy, evicting others to fit; False (recording nothing) when the
        job or the content went meanwhile (an upload, a deletion or gc)."""
        with transaction(self._engine) as conn:
            if conn.execute(sa.select(_jobs.c.sha256).where(_jobs.c.sha256 == sha256)).first() is None:
                return False
            blob = conn.execute(
                sa.select(tables.blobs.c.sha256).where(tables.blobs.c.sha256 == sha256)
            ).first()
            xet_file = conn.execute(
                sa.select(tables.xet_files.c.file_hash).where(tables.xet_files.c.sha256 == sha256).limit(1)
            ).first()
            conn.execute(sa.delete(_jobs).where(_jobs.c.sha256 == sha256))
            if blob is None or xet_file is None:
                return False
            self._content.still_stored(BLOBS, sha256, size)
            self._evict(conn, self.budget - size, keep=sha256)
            now = utcnow()
            insert_ignore(
                conn, _copies, [{"sha256": sha256, "size": size, "created_at": now, "last_served_at": now}]
            )
        return True

    def drop(self, shas: list[str]) -> None:
        """Remove these whole copies (`weightyard fsck --repair` of damaged ones), row then object under the
        write lock as eviction does, and only of content whose xorbs are recorded."""
        if not shas:
            return
        has_xorbs = sa.exists().where(tables.xet_files.c.sha256 == _copies.c.sha256)
        with transaction(self._engine) as conn:
            doomed = conn.execute(
                sa.delete(_copies)
                .where(_copies.c.sha256.in_(sorted(shas)), has_xorbs)
                .returning(_copies.c.sha256)
            ).scalars()
            for sha256 in sorted(doomed):
                self._content.objects.delete(BLOBS, sha256)

    def _evict(self, conn: sa.Connection, allowed: int, keep: str) -> None:
        """Inside a write transaction: remove the least recently served copies (never `keep`, never content
        whose xorbs are not recorded) until the copies take at most `allowed` bytes."""
        total = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(_copies.c.size), 0))).scalar_one())
        if total <= allowed:
            return
        has_xorbs = sa.exists().where(tables.xet_files.c.sha256 == _copies.c.sha256)
        candidates = conn.execute(
            sa.select(_copies.c.sha256, _copies.c.size)
            .where(_copies.c.sha256 != keep, has_xorbs)
            .order_by(_copies.c.last_served_at, _copies.c.sha256)
        )
        for row in candidates.all():
            if total <= allowed:
                return
            conn.execute(sa.delete(_copies).where(_copies.c.sha256 == row.sha256))
            # Under the write lock, after the row, as gc removes objects (module docstring).
            self._content.objects.delete(BLOBS, row.sha256)
            total -= int(row.size)
            _log.info("whole copy of %s evicted (%d bytes)", row.sha256, row.size)
