"""Scan reports for the hub: each blob is scanned once per name key and scanner version, and stored.

Folder context (a config.json naming code, an index naming shards, ONNX external data) is added per commit
from the stored reports, without reading blobs again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import threading
from collections.abc import Mapping

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.errors import BlobNotFound
from weightyard.repos.objects import FileEntry
from weightyard.scan import (
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
from weightyard.storage import BlobStore

POLICIES = ("refuse", "quarantine", "warn")


PENDING = "scan.pending"
# A report being redone in the background is shown meanwhile; this many pairs wait at most.
_QUEUE_LIMIT = 10_000
_SWEEP_BATCH = 100
_SWEEP_INTERVAL_S = 60.0


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


class ScanService:
    """Scans run at commit time (`scan`) and in a background thread (`rescan_pending`); reads (`report`,
    `reports`) only look up stored reports, so no GET or HEAD ever scans. A read that finds only an older
    scanner's report shows it, flagged stale, and queues the content for a rescan."""

    def __init__(self, engine: sa.Engine, store: BlobStore) -> None:
        self._engine = engine
        self._store = store
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None

    # -- reads -----------------------------------------------------------------------------------------
    def _stored(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Report]:
        """The newest readable report of each (sha256, name key), the current scanner's first."""
        if not pairs:
            return {}
        hashes = sorted({sha for sha, _ in pairs})
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    tables.scan_reports.c.sha256,
                    tables.scan_reports.c.name_key,
                    tables.scan_reports.c.scanner_version,
                    tables.scan_reports.c.report,
                )
                .where(tables.scan_reports.c.sha256.in_(hashes))
                .order_by(tables.scan_reports.c.created_at)
            ).all()
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
        """Stored reports by path, for paths mapped to their blob's sha256; never scans."""
        pairs = {path: (sha, name_key(path)) for path, sha in blobs.items()}
        stored = self._stored(list(pairs.values()))
        reports: dict[str, Report] = {}
        for path, pair in pairs.items():
            found = stored.get(pair)
            reports[path] = _pending(path) if found is None else dataclasses.replace(found, name=path)
            if found is None or found.scanner_version != SCANNER_VERSION:
                self._enqueue(pair[0], path)
        return reports

    def reports(self, files: Mapping[str, FileEntry]) -> dict[str, Report]:
        """Stored reports of a snapshot's files, with the cross-file findings of the folder merged in."""
        reports = self.reports_of({path: entry.sha256 for path, entry in files.items()})
        return apply_context(reports, check_references(reports, list(files)))

    # -- scans -----------------------------------------------------------------------------------------
    def scan(self, sha256: str, path: str) -> Report:
        """The current scanner's report of the blob at `path`, scanning it now (and storing the report) if
        there is none. For commits and the background worker, never for a read."""
        key = name_key(path)
        stored = self._stored([(sha256, key)]).get((sha256, key))
        if stored is not None and stored.scanner_version == SCANNER_VERSION:
            return dataclasses.replace(stored, name=path)
        # Read in place: a whole blob is mapped, content rebuilt from xorbs is read by the ranges the
        # parsers touch (every chunk re-hashed as it is read), never spooled to disk.
        with self._store.open(sha256) as handle:
            report = scan_file(handle, path)
        with transaction(self._engine) as conn:
            exists = conn.execute(
                sa.select(tables.scan_reports.c.sha256).where(
                    tables.scan_reports.c.sha256 == sha256,
                    tables.scan_reports.c.name_key == key,
                    tables.scan_reports.c.scanner_version == SCANNER_VERSION,
                )
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(tables.scan_reports).values(
                        sha256=sha256,
                        name_key=key,
                        scanner_version=SCANNER_VERSION,
                        verdict=report.verdict.value,
                        format=report.format,
                        report=json.dumps(report.to_dict()),
                        created_at=utcnow(),
                    )
                )
            # Reports of older rules are never shown again once the current one exists.
            conn.execute(
                sa.delete(tables.scan_reports).where(
                    tables.scan_reports.c.sha256 == sha256,
                    tables.scan_reports.c.name_key == key,
                    tables.scan_reports.c.scanner_version != SCANNER_VERSION,
                )
            )
        return report

    def _enqueue(self, sha256: str, path: str) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((sha256, path))
        self._wake.set()

    def stale_pairs(self, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` stored (sha256, name key) pairs that have no report of the current scanner."""
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
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(old.c.sha256, old.c.name_key)
                .where(old.c.scanner_version != SCANNER_VERSION, ~current)
                .distinct()
                .limit(limit)
            ).all()
        return [(row.sha256, row.name_key) for row in rows]

    def rescan_pending(self, limit: int = _SWEEP_BATCH) -> int:
        """Redo up to `limit` reports: content queued by reads first, then stored reports of older rules.
        Content whose blob is gone is skipped. Returns how many scans ran."""
        work: dict[tuple[str, str], str] = {}
        while len(work) < limit:
            try:
                sha256, path = self._queue.get_nowait()
            except queue.Empty:
                break
            work.setdefault((sha256, name_key(path)), path)
        for sha256, key in self.stale_pairs(max(0, limit - len(work))):
            work.setdefault((sha256, key), name_for_key(key))
        done = 0
        for (sha256, _), path in work.items():
            if self._stop.is_set():
                break
            try:
                self.scan(sha256, path)
            except BlobNotFound:
                self._forget(sha256)
                continue
            done += 1
        return done

    def _forget(self, sha256: str) -> None:
        """Reports of content that is no longer stored: nothing can be served from them or redone."""
        with transaction(self._engine) as conn:
            conn.execute(
                sa.delete(tables.scan_reports).where(
                    tables.scan_reports.c.sha256 == sha256,
                    tables.scan_reports.c.scanner_version != SCANNER_VERSION,
                )
            )

    def start_background(self) -> None:
        """Start the thread that redoes stale and pending reports (one per process)."""
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="scan-rescans", daemon=True)
        self._worker.start()

    def stop_background(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if self.rescan_pending() == 0:
                # Nothing left: wait for a read to queue more work, or for the next sweep of old reports.
                self._wake.wait(timeout=_SWEEP_INTERVAL_S)


def _parse(text: str) -> Report | None:
    """A stored report; one an older scanner stored in a shape this one cannot read counts as missing."""
    try:
        return Report.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def worst(reports: Mapping[str, Report]) -> Verdict:
    return worst_verdict(report.verdict for report in reports.values())
