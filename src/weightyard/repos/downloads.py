"""Download counts, gathered in memory and added to the repos' totals in one short write every second.

A write transaction per download would make every model fetch wait for the database's one writer. Instead each
server process counts in memory and adds what it counted with `downloads = downloads + n` (atomic, so any
number of processes may add at once) every `FLUSH_INTERVAL_S`, and once more when it stops. The totals that
`model_info` and the listings show are therefore up to a second late, as the Hub's are (its counts are
delayed by much more); a process killed with `kill -9` loses the downloads of its last second.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import sqlalchemy as sa

from weightyard.db import tables, transaction

FLUSH_INTERVAL_S = 1.0

_log = logging.getLogger("weightyard.repos")


class DownloadCounter:
    """Counts downloads per repo in this process; `flush` adds them to the database."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._pending: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    def count(self, repo_id: int) -> None:
        with self._lock:
            self._pending[repo_id] += 1

    def flush(self) -> None:
        """Add the downloads counted since the last flush to the repos' totals, in one write transaction."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        repos = tables.repos
        try:
            with transaction(self._engine) as conn:
                for repo_id, count in sorted(pending.items()):
                    conn.execute(
                        sa.update(repos)
                        .where(repos.c.id == repo_id)
                        .values(downloads=repos.c.downloads + count)
                    )
        except sa.exc.OperationalError:
            # The database was busy past its timeout: keep the counts for the next flush.
            _log.warning("download counts not saved yet: the database is busy", exc_info=True)
            with self._lock:
                self._pending.update(pending)

    def start_background(self) -> None:
        """Start the thread that flushes every `FLUSH_INTERVAL_S` (one per process)."""
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="download-counts", daemon=True)
        self._worker.start()

    def stop_background(self) -> None:
        """Stop the thread; `Hub.close` saves what it had not saved yet."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60)
            self._worker = None

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self.flush()
