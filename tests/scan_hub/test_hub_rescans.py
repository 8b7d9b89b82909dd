"""Reads never scan: a report made by older scanner rules is shown flagged stale (and content without any
report as pending) while a background thread of the server redoes it.

These tests use a hub of their own, with the periodic sweep for older rules' reports turned off: the order
"the read sees the old report, then the background redoes it" is only certain when neither another test's
reads nor a sweep wake the background thread in between. The sweep is tested on a hub of its own."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi
from tests.support import Server, start_server, stop_server

from weightyard.config import Settings
from weightyard.db import tables, transaction
from weightyard.hub import Hub
from weightyard.repos.scan_jobs import ScanQueue
from weightyard.scan import SCANNER_VERSION

UNSAFE_PICKLE = b"cos\nsystem\n(S'echo WEIGHTYARD_MARKER'\ntR."
OLD_VERSION = "weightyard-scan/0"
# A background rescan takes well under a second; the polls below stop after this many tries.
POLLS = 300


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("rescan-hub") / "data"
    instance = start_server(data, env={"WEIGHTYARD_SCAN_SWEEP": "0"})
    yield instance
    stop_server(instance)


def _db(server: Server) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{server.data / 'weightyard.db'}")


def _rows(server: Server, sha256: str) -> list[tuple[str, str]]:
    engine = _db(server)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT scanner_version, verdict FROM scan_reports WHERE sha256 = :sha"), {"sha": sha256}
        ).all()
    engine.dispose()
    return sorted((row[0], row[1]) for row in rows)


def _make_stale(server: Server, sha256: str) -> None:
    """Pretend older rules scanned this content and found it safe."""
    old = {
        "name": "model.pkl",
        "verdict": "safe",
        "format": "pickle",
        "size": len(UNSAFE_PICKLE),
        "scanner_version": OLD_VERSION,
        "findings": [],
        "references": [],
        "imports": [],
    }
    engine = _db(server)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE scan_reports SET scanner_version = :v, verdict = 'safe', report = :r "
                "WHERE sha256 = :s"
            ),
            {"v": OLD_VERSION, "r": json.dumps(old), "s": sha256},
        )
    engine.dispose()


def _forget(server: Server, sha256: str) -> None:
    engine = _db(server)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scan_reports WHERE sha256 = :s"), {"s": sha256})
    engine.dispose()


def _security(server: Server, repo: str, path: str) -> dict[str, Any]:
    tree = httpx.get(f"{server.url}/api/models/{repo}/tree/main?expand=true").json()
    status: dict[str, Any] = next(item for item in tree if item["path"] == path)["securityFileStatus"]
    return status


def _await_current(server: Server, repo: str, path: str) -> dict[str, Any]:
    for _ in range(POLLS):
        status = _security(server, repo, path)
        if status["scanState"] == "current":
            return status
        time.sleep(0.1)
    raise AssertionError(f"{path} was not rescanned in the background")


def _new_repo(server: Server, name: str, policy: str) -> HfApi:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(name)
    httpx.put(
        f"{server.url}/api/models/{name}/settings",
        headers={"Authorization": f"Bearer {server.token}"},
        json={"scanPolicy": policy},
    ).raise_for_status()
    return api


def test_a_stale_verdict_is_shown_flagged_by_reads_and_redone_in_the_background(hub: Server) -> None:
    repo = "admin/stale"
    api = _new_repo(hub, repo, "warn")
    api.upload_file(path_or_fileobj=UNSAFE_PICKLE, path_in_repo="model.pkl", repo_id=repo)
    sha = hashlib.sha256(UNSAFE_PICKLE).hexdigest()
    _make_stale(hub, sha)
    stale = _security(hub, repo, "model.pkl")
    # A read that scanned would have answered "unsafe"; this one shows what is stored, flagged.
    assert (stale["status"], stale["scanState"], stale["scanner"]) == ("safe", "stale", OLD_VERSION)
    current = _await_current(hub, repo, "model.pkl")
    assert (current["status"], current["scanner"]) == ("unsafe", SCANNER_VERSION)
    # The old rules' report is gone once the current one is stored.
    assert _rows(hub, sha) == [(SCANNER_VERSION, "unsafe")]


def test_content_without_a_report_is_pending_quarantined_and_scanned_in_the_background(hub: Server) -> None:
    repo = "admin/pending"
    api = _new_repo(hub, repo, "quarantine")
    content = b"plain notes\n" * 10
    api.upload_file(path_or_fileobj=content, path_in_repo="notes.txt", repo_id=repo)
    sha = hashlib.sha256(content).hexdigest()
    _forget(hub, sha)
    download = httpx.get(f"{hub.url}/{repo}/resolve/main/notes.txt")
    assert (download.status_code, download.headers["x-error-code"]) == (403, "Quarantined")
    assert "not been scanned yet" in download.json()["error"]
    current = _await_current(hub, repo, "notes.txt")
    assert current["status"] == "safe"
    assert httpx.get(f"{hub.url}/{repo}/resolve/main/notes.txt").content == content
    _forget(hub, sha)
    pending = _security(hub, repo, "notes.txt")
    assert (pending["status"], pending["scanState"]) == ("pending", "pending")
    assert _await_current(hub, repo, "notes.txt")["status"] == "safe"


def test_the_sweep_redoes_reports_of_older_rules_that_no_read_came_across(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"WEIGHTYARD_SCAN_SWEEP": "1"})
    try:
        repo = "admin/swept"
        api = _new_repo(server, repo, "warn")
        api.upload_file(path_or_fileobj=UNSAFE_PICKLE, path_in_repo="model.pkl", repo_id=repo)
        sha = hashlib.sha256(UNSAFE_PICKLE).hexdigest()
        _make_stale(server, sha)
        # Nothing reads the repo: only the database is watched.
        for _ in range(POLLS):
            if _rows(server, sha) == [(SCANNER_VERSION, "unsafe")]:
                break
            time.sleep(0.1)
        assert _rows(server, sha) == [(SCANNER_VERSION, "unsafe")]
    finally:
        stop_server(server)


def test_upkeep_with_the_sweep_off_still_prunes_the_queue(tmp_path: Path) -> None:
    hub = Hub.open(Settings(data=tmp_path / "data", scan_sweep=0))
    try:
        queue = ScanQueue(hub.engine, lease_s=30)
        queue.enqueue({(hashlib.sha256(b"old").hexdigest(), ""): "old.bin"})
        with transaction(hub.engine) as conn:
            conn.execute(sa.update(tables.scan_jobs).values(scanner_version=OLD_VERSION))
        # Upkeep renews leases and prunes the queue of other versions' jobs; with no sweep before it, it
        # raised (it read the sweep's result) instead of pruning.
        hub.repos.scans._upkeep()
        with hub.engine.connect() as conn:
            assert conn.execute(sa.select(tables.scan_jobs.c.id)).all() == []
    finally:
        hub.close()
