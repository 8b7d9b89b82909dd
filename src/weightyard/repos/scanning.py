"""Scan reports for the hub: each blob is scanned once per name key and scanner version, and stored.

Folder context (a config.json naming code, an index naming shards, ONNX external data) is added per commit
from the stored reports, without reading blobs again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.repos.objects import FileEntry
from weightyard.scan import (
    SCANNER_VERSION,
    Report,
    Verdict,
    apply_context,
    check_references,
    name_key,
    scan_file,
    worst_verdict,
)
from weightyard.storage import BlobStore

POLICIES = ("refuse", "quarantine", "warn")


def _report_from_dict(data: Mapping[str, Any], path: str) -> Report:
    """A stored report, named after the path it is shown for (one report serves every path of the blob)."""
    return dataclasses.replace(Report.from_dict(dict(data)), name=path)


_SPOOL_CHUNK = 4 * 1024 * 1024


def _scan_handle(handle: BinaryIO, path: str) -> Report:
    """Scan a stored blob. The scanner maps real files into memory; content reassembled from chunks (Xet
    storage) is spooled to a temporary file first, so memory stays bounded whatever the file size."""
    try:
        handle.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(handle, spool, _SPOOL_CHUNK)
            spool.seek(0)
            return scan_file(spool, path)
    return scan_file(handle, path)


class ScanService:
    def __init__(self, engine: sa.Engine, store: BlobStore) -> None:
        self._engine = engine
        self._store = store

    def _stored(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Mapping[str, Any]]:
        if not pairs:
            return {}
        hashes = sorted({sha for sha, _ in pairs})
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    tables.scan_reports.c.sha256, tables.scan_reports.c.name_key, tables.scan_reports.c.report
                ).where(
                    tables.scan_reports.c.sha256.in_(hashes),
                    tables.scan_reports.c.scanner_version == SCANNER_VERSION,
                )
            ).all()
        return {(row.sha256, row.name_key): json.loads(row.report) for row in rows}

    def report(self, sha256: str, path: str) -> Report:
        """The report of the blob `sha256` stored at `path`, scanning it now if no current report exists."""
        key = name_key(path)
        stored = self._stored([(sha256, key)]).get((sha256, key))
        if stored is not None:
            return _report_from_dict(stored, path)
        with self._store.open(sha256) as handle:
            report = _scan_handle(handle, path)
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
        return report

    def reports(self, files: Mapping[str, FileEntry]) -> dict[str, Report]:
        """Reports of every file of a snapshot, with the cross-file findings of the folder merged in.

        Files without a current report (new content, or a newer scanner) are scanned first.
        """
        pairs = {path: (entry.sha256, name_key(path)) for path, entry in files.items()}
        stored = self._stored(list(pairs.values()))
        reports: dict[str, Report] = {}
        for path, pair in pairs.items():
            data = stored.get(pair)
            reports[path] = _report_from_dict(data, path) if data is not None else self.report(pair[0], path)
        return apply_context(reports, check_references(reports, list(files)))


def worst(reports: Mapping[str, Report]) -> Verdict:
    return worst_verdict(report.verdict for report in reports.values())
