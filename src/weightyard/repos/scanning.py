"""Scan reports for the hub: each blob is scanned once per name key and scanner version, and stored.

Folder context (a config.json naming code, an index naming shards, ONNX external data) is added per commit
from the stored reports, without reading blobs again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.errors import BlobNotFound, ScanPending, WeightyardError
from weightyard.repos.content import ContentStore
from weightyard.repos.objects import FileEntry
from weightyard.repos.scan_jobs import Failure, Job, Key, ScanQueue, worker_id
from weightyard.scan import (
    DEFAULT_LIMITS,
    SCANNER_VERSION,
    Finding,
    Report,
    Severity,
    Verdict,
    apply_context,
    check_references,
    name_key,
    scan_file,
    worst_verdict,
)
from weightyard.scan.names import name_for_key

POLICIES = ("refuse", "quarantine", "warn")

_log = logging.getLogger(__name__)


PENDING = "scan.pending"
# Content that reads found without a current report waits here (in memory: a hint, not a record) until a
# runner thread queues it in the database; past this many, more are dropped until the next sweep.
_HINT_LIMIT = 10_000
_SWEEP_BATCH = 100
_SWEEP_INTERVAL_S = 60.0
# How often an idle runner looks for jobs other processes queued (its own process wakes it at once).
_POLL_S = 1.0
# How often a waiting commit looks at its scans' progress when another process runs them.
_WAIT_POLL_S = 0.2
_WAIT_PER_SCAN_S = 0.001
# A commit waits `scan_wait` seconds for one of its scans to finish, again after each that does, and at most
# this long in all (a large commit of many small new files).
_WAIT_LIMIT_S = 60.0
# A commit naming content whose scan failed queues it again once it has been failed this long.
_RETRY_FAILED_AFTER = datetime.timedelta(minutes=1)
# Jobs a runner claims at once: fewer transactions per scan for many small files, while a few large ones
# still spread over the processes.
_CLAIM_BATCH = 8
# A scan is bounded by its own budget (`weightyard.scan.Limits.seconds`); a lease is no longer renewed past
# this, so a scan stuck beyond every budget is taken over (and counted as an attempt).
_MAX_SCAN_S = 2 * DEFAULT_LIMITS.seconds + 60


def scan_state(report: Report) -> str:
    """ "current", "stale" (made by another scanner version; being redone in the background) or "pending"
    (never scanned yet: no verdict exists)."""
    if report.format == "pending":
        return "pending"
    return "current" if report.scanner_version == SCANNER_VERSION else "stale"


def shown_verdict(report: Report) -> str | None:
    """The verdict a page shows: None before any scan, marked while a stale verdict is being redone."""
    state = scan_state(report)
    if state == "pending":
        return None
    return report.verdict.value + (" (stale: rescan pending)" if state == "stale" else "")


def _pending(path: str) -> Report:
    """What a read shows for content without any report: no verdict, so never `safe`."""
    finding = Finding(PENDING, Severity.ERROR, path, "", "not scanned yet; the scan runs in the background")
    return Report(name=path, format="pending", findings=(finding,), scanner_version="")


# Every serving decision reads this (built once: building a statement costs more than running it).
_REPORTS_OF = (
    sa.select(
        tables.scan_reports.c.sha256,
        tables.scan_reports.c.name_key,
        tables.scan_reports.c.scanner_version,
        tables.scan_reports.c.report,
    )
    .where(tables.scan_reports.c.sha256.in_(sa.bindparam("hashes", expanding=True)))
    .order_by(tables.scan_reports.c.created_at)
)


class ScanService:
    """Scans run as jobs of the database's scan queue (repos/scan_jobs.py), taken by runner threads that
    every server process starts (`start_background`): content is queued when its upload completes, and a
    commit waits (`await_scans`) for the reports of the files it adds. Reads (`report`, `reports`) only look
    up stored reports, so no GET or HEAD ever scans. A read that finds only an older scanner's report shows
    it, flagged stale, and hints the content to the runners, which also sweep the reports of older rules.

    Without runners in the process (the CLI, a hub opened by a script), a commit runs its own jobs, still
    claimed through the queue, so no content is ever scanned twice at once."""

    def __init__(
        self,
        engine: sa.Engine,
        store: ContentStore,
        *,
        workers: int = 1,
        lease_s: int = 30,
        sweep_s: float = _SWEEP_INTERVAL_S,
    ) -> None:
        self._engine = engine
        self._store = store
        self._queue = ScanQueue(engine, lease_s)
        self._workers = max(1, workers)
        self._lease_s = lease_s
        self._sweep_s = sweep_s  # 0: no sweep
        self._me = worker_id()
        self._hints: dict[Key, str] = {}
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._running: dict[int, float] = {}  # job id -> monotonic start, for lease renewal
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_renewal = self._next_sweep = self._next_prune = 0.0

    # -- reads -----------------------------------------------------------------------------------------
    def _stored(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Report]:
        """The newest readable report of each (sha256, name key), the current scanner's first."""
        if not pairs:
            return {}
        hashes = sorted({sha for sha, _ in pairs})
        with self._engine.connect() as conn:
            rows = conn.execute(_REPORTS_OF, {"hashes": hashes}).all()
        found: dict[tuple[str, str], Report] = {}
        for row in rows:
            key = (row.sha256, row.name_key)
            known = found.get(key)
            if known is not None and known.scanner_version == SCANNER_VERSION:
                continue
            report = _parse(row.report)
            if report is not None:
                found[key] = report
        return found

    def report(self, sha256: str, path: str) -> Report:
        """The stored report of the blob `sha256` at `path`: current, stale or pending (see `scan_state`)."""
        return self.reports_of({path: sha256})[path]

    def reports_of(self, blobs: Mapping[str, str]) -> dict[str, Report]:
        """Stored reports by path, for paths mapped to their blob's sha256; never scans, never writes."""
        pairs = {path: (sha, name_key(path)) for path, sha in blobs.items()}
        stored = self._stored(list(pairs.values()))
        reports: dict[str, Report] = {}
        for path, pair in pairs.items():
            found = stored.get(pair)
            reports[path] = _pending(path) if found is None else dataclasses.replace(found, name=path)
            if found is None or found.scanner_version != SCANNER_VERSION:
                self._hint(pair, path)
        return reports

    def reports(self, files: Mapping[str, FileEntry]) -> dict[str, Report]:
        """Stored reports of a snapshot's files, with the cross-file findings of the folder merged in."""
        reports = self.reports_of({path: entry.sha256 for path, entry in files.items()})
        return apply_context(reports, check_references(reports, list(files)))

    def _hint(self, key: Key, path: str) -> None:
        with self._lock:
            if len(self._hints) < _HINT_LIMIT:
                self._hints.setdefault(key, path)
        self._wake.set()

    # -- the queue -------------------------------------------------------------------------------------
    def enqueue_uploads(self, sha256s: Iterable[str]) -> None:
        """Queue the scans of content whose upload just completed, before any commit names it. Its file name
        is not known yet: it is scanned under the empty name key, the one most content has (a commit naming
        it `config.json` or `*.py` queues that scan too). A failed scan is tried again: the content may have
        been uploaded anew. This process's runners start at once."""
        work = {(sha256, ""): name_for_key("") for sha256 in sha256s}
        self._queue.enqueue(work, retry_failed_after=datetime.timedelta(0))
        self._wake.set()

    def await_scans(self, blobs: Mapping[str, str], wait_s: float) -> None:
        """Return once every blob (path → sha256) has a report of the current scanner, queueing what is
        missing. Raise the error of a scan that failed, or `ScanPending` once `wait_s` seconds have passed
        without any of these scans finishing (or `_WAIT_LIMIT_S` in all): the client retries, the scans go on.
        """
        work = {(sha, name_key(path)): path for path, sha in blobs.items()}
        # A scan that failed lately is not tried again for a commit: a client sending its commit again
        # gets the failure, instead of a new try of the scan and 503 again and again.
        self._queue.enqueue(work, retry_failed_after=_RETRY_FAILED_AFTER)
        self._wake.set()
        started = time.monotonic()
        deadline = started + wait_s
        left = set(work)
        while True:
            progress = self._queue.progress(left)
            if progress.failed:
                raise next(iter(progress.failed.values())).error()
            if progress.unqueued:
                self._queue.enqueue({key: work[key] for key in progress.unqueued})
                self._wake.set()
            now = time.monotonic()
            if len(progress.pending | progress.unqueued) < len(left):
                # progress: the wait starts again, within the overall limit
                deadline = min(max(deadline, now + wait_s), started + max(wait_s, _WAIT_LIMIT_S))
            left = progress.pending | progress.unqueued
            if not left:
                return
            if not self._threads:
                # No runner in this process: run the jobs here, claimed like any other.
                ran = False
                while jobs := self._queue.claim(self._me, _CLAIM_BATCH, keys=left):
                    self._execute(jobs)
                    ran = True
                if ran:
                    continue
            if now >= deadline:
                paths = sorted(work[key] for key in left)
                raise ScanPending(
                    f"the scan of {', '.join(paths[:5])}{' …' if len(paths) > 5 else ''} is still running; "
                    "nothing was committed, retry shortly",
                    retry_after=max(1, math.ceil(wait_s)),
                    pending=paths[:100],
                )
            with self._done:
                self._done.wait(min(deadline - now, _WAIT_POLL_S))
            # Looking costs in proportion to the scans left, and this thread shares the interpreter with the
            # runners: with many left, look again only after a while, even when told some finished.
            time.sleep(min(_WAIT_POLL_S, len(left) * _WAIT_PER_SCAN_S))

    def _execute(self, jobs: list[Job]) -> None:
        """Run claimed jobs: store their reports and end them in one transaction, or record why a report
        could not be made. Jobs not started when the process stops are given back."""
        started = time.monotonic()
        with self._lock:
            self._running.update((job.id, started) for job in jobs)
        try:
            stored = self._stored([(job.sha256, job.name_key) for job in jobs])
            done: list[tuple[Job, Report | None]] = []
            for n, job in enumerate(jobs):
                if self._stop.is_set():
                    self._queue.release(self._me, jobs[n:])
                    break
                known = stored.get((job.sha256, job.name_key))
                if known is not None and known.scanner_version == SCANNER_VERSION:
                    done.append((job, None))  # another worker finished it meanwhile
                    continue
                try:
                    done.append((job, self._scan_stored(job.sha256, job.path)))
                except BlobNotFound as exc:
                    self._forget(job.sha256)
                    self._queue.fail(self._me, job, Failure(exc.code, exc.status, exc.message), final=True)
                except WeightyardError as exc:
                    _log.error("scan of %s failed: %s", job.sha256, exc.message)
                    self._queue.fail(self._me, job, Failure(exc.code, exc.status, exc.message), final=False)
                except Exception as exc:  # damaged storage of any kind: never a verdict
                    _log.exception("scan of %s failed", job.sha256)
                    failure = Failure("ScanFailed", 500, f"the scan could not read the content: {exc}")
                    self._queue.fail(self._me, job, failure, final=False)
            with self._queue.write() as conn:
                for job, report in done:
                    if report is not None:
                        _save(conn, job.sha256, job.name_key, report)
                self._queue.finish(conn, (job for job, _ in done))
        finally:
            with self._done:
                for job in jobs:
                    self._running.pop(job.id, None)
                self._done.notify_all()

    # -- scans -----------------------------------------------------------------------------------------
    def scan(self, sha256: str, path: str) -> Report:
        """The current scanner's report of the blob at `path`, scanning it now (and storing the report) if
        there is none. For the queue's jobs and maintenance, never for a request."""
        key = name_key(path)
        stored = self._stored([(sha256, key)]).get((sha256, key))
        if stored is not None and stored.scanner_version == SCANNER_VERSION:
            return dataclasses.replace(stored, name=path)
        report = self._scan_stored(sha256, path)
        with self._queue.write() as conn:
            _save(conn, sha256, key, report)
        return report

    def _scan_stored(self, sha256: str, path: str) -> Report:
        # Read in place: a whole blob is mapped, content rebuilt from xorbs is read by the ranges the
        # parsers touch (every chunk re-hashed as it is read), never spooled to disk.
        with self._store.open(sha256) as handle:
            return scan_file(handle, path)

    def stale_pairs(self, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` stored (sha256, name key) pairs that have no report of the current scanner, nor a job
        to make one."""
        old, newer = tables.scan_reports.alias("old"), tables.scan_reports.alias("newer")
        current = (
            sa.select(newer.c.sha256)
            .where(
                newer.c.sha256 == old.c.sha256,
                newer.c.name_key == old.c.name_key,
                newer.c.scanner_version == SCANNER_VERSION,
            )
            .exists()
        )
        jobs = tables.scan_jobs
        queued = (
            sa.select(jobs.c.id)
            .where(
                jobs.c.sha256 == old.c.sha256,
                jobs.c.name_key == old.c.name_key,
                jobs.c.scanner_version == SCANNER_VERSION,
            )
            .exists()
        )
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(old.c.sha256, old.c.name_key)
                .where(old.c.scanner_version != SCANNER_VERSION, ~current, ~queued)
                .distinct()
                .limit(limit)
            ).all()
        return [(row.sha256, row.name_key) for row in rows]

    def _forget(self, sha256: str) -> None:
        """Reports of content that is no longer stored: nothing can be served from them or redone."""
        with transaction(self._engine) as conn:
            conn.execute(
                sa.delete(tables.scan_reports).where(
                    tables.scan_reports.c.sha256 == sha256,
                    tables.scan_reports.c.scanner_version != SCANNER_VERSION,
                )
            )

    # -- runners ---------------------------------------------------------------------------------------
    def start_background(self) -> None:
        """Start this process's runners: `workers` threads that claim and run jobs, and one that renews
        their leases, queues the reads' hints and sweeps reports of older rules."""
        if self._threads:
            return
        self._me = worker_id()  # this process's own: a hub built before a fork is shared by its children
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, name=f"scan-runner-{n}", daemon=True)
            for n in range(self._workers)
        ]
        self._threads.append(threading.Thread(target=self._keep, name="scan-keeper", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop_background(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                jobs = self._queue.claim(self._me, _CLAIM_BATCH) if self._queue.has_work() else []
                if jobs:
                    self._execute(jobs)
            except Exception:  # the database is unreachable for a while: the runner carries on after it
                _log.exception("scan runner")
                jobs = []
            if not jobs:
                self._wake.wait(timeout=_POLL_S)
                continue
            # Another runner of this process may sleep while jobs are left.
            self._wake.set()

    def _keep(self) -> None:
        while not self._stop.wait(timeout=_POLL_S):
            try:
                self._upkeep()
            except Exception:  # as in `_run`
                _log.exception("scan upkeep")

    def _upkeep(self) -> None:
        """Renew the leases of running jobs, queue the reads' hints, sweep reports of older rules, and drop
        the jobs of other scanner versions."""
        now = time.monotonic()
        with self._lock:
            hints, self._hints = self._hints, {}
            held = [job for job, started in self._running.items() if now - started < _MAX_SCAN_S]
        if now >= self._next_renewal:
            self._queue.renew(self._me, held)
            self._next_renewal = now + self._lease_s / 3
        if hints:
            self._queue.enqueue(hints)
            self._wake.set()
        if self._sweep_s > 0 and now >= self._next_sweep:
            stale = self.stale_pairs(_SWEEP_BATCH)
            self._queue.enqueue({pair: name_for_key(pair[1]) for pair in stale})
            self._next_sweep = now + (0 if len(stale) == _SWEEP_BATCH else self._sweep_s)
            if stale:
                self._wake.set()
        if now >= self._next_prune:
            self._queue.prune()
            self._next_prune = now + _SWEEP_INTERVAL_S


def _save(conn: sa.Connection, sha256: str, key: str, report: Report) -> None:
    """Store a report of the current scanner. Two workers may finish the same content (a lease taken over):
    the first report stays. Reports of older rules are never shown again once the current one exists."""
    insert_ignore(
        conn,
        tables.scan_reports,
        [
            {
                "sha256": sha256,
                "name_key": key,
                "scanner_version": SCANNER_VERSION,
                "verdict": report.verdict.value,
                "format": report.format,
                "report": json.dumps(report.to_dict()),
                "created_at": utcnow(),
            }
        ],
    )
    conn.execute(
        sa.delete(tables.scan_reports).where(
            tables.scan_reports.c.sha256 == sha256,
            tables.scan_reports.c.name_key == key,
            tables.scan_reports.c.scanner_version != SCANNER_VERSION,
        )
    )


def _parse(text: str) -> Report | None:
    """A stored report; one an older scanner stored in a shape this one cannot read counts as missing."""
    try:
        return Report.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def worst(reports: Mapping[str, Report]) -> Verdict:
    return worst_verdict(report.verdict for report in reports.values())
