"""The scan queue (repos/scan_jobs.py): a job per content, claimed by one worker at a time on SQLite and on
PostgreSQL, taken over when its worker's lease runs out, failed after bounded attempts; on a real hub, an
upload queues its scan before any commit, and a commit whose scan is still running is answered a retryable
503 ScanPending."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError
from tests.proxy import RewritingProxy
from tests.support import Server, start_server, stop_server, weightyard_cli

from weightyard.db import create_engine, migrate, tables, transaction, utcnow
from weightyard.repos.scan_jobs import FAILED, MAX_ATTEMPTS, ScanQueue
from weightyard.scan import SCANNER_VERSION

JOBS = 40
THREADS = 8
# Polls of the database for a background scan's report (each 50 ms apart) before a test gives up.
POLLS = 400


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'queue.db'}")
        migrate(engine)
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
    with transaction(engine) as conn:  # the PostgreSQL database is shared by the module's tests
        conn.execute(sa.delete(tables.scan_jobs))
        conn.execute(sa.delete(tables.scan_reports))
    yield engine
    engine.dispose()


def _digest(n: int) -> str:
    return hashlib.sha256(f"content {n}".encode()).hexdigest()


def _expire_leases(engine: sa.Engine) -> None:
    """What time does to the claim of a worker that died (kill -9): its lease runs out."""
    past = utcnow() - datetime.timedelta(seconds=1)
    with transaction(engine) as conn:
        conn.execute(sa.update(tables.scan_jobs).values(lease_until=past))


def test_enqueue_is_idempotent_and_skips_content_already_scanned(engine: sa.Engine) -> None:
    queue = ScanQueue(engine, lease_s=30)
    queue.enqueue({(_digest(1), ""): "a.bin", (_digest(2), ".json"): "config.json"})
    queue.enqueue({(_digest(1), ""): "b.bin"})
    with transaction(engine) as conn:
        conn.execute(
            sa.insert(tables.scan_reports).values(
                sha256=_digest(3),
                name_key="",
                scanner_version=SCANNER_VERSION,
                verdict="safe",
                format="text",
                report="{}",
                created_at=utcnow(),
            )
        )
    queue.enqueue({(_digest(3), ""): "c.txt"})
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tables.scan_jobs.c.sha256, tables.scan_jobs.c.path)).all()
    assert sorted(map(tuple, rows)) == sorted([(_digest(1), "a.bin"), (_digest(2), "config.json")])


def test_concurrent_claims_hand_each_job_to_exactly_one_worker(engine: sa.Engine) -> None:
    queue = ScanQueue(engine, lease_s=30)
    queue.enqueue({(_digest(n), ""): f"f{n}.bin" for n in range(JOBS)})
    claimed: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(worker: str) -> None:
        try:
            start.wait()
            for _ in range(JOBS + 1):  # bounded: never more claims than there are jobs
                jobs = queue.claim(worker, limit=3)
                if not jobs:
                    return
                claimed.extend((worker, job.id) for job in jobs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"worker-{n}",)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    ids = [job_id for _, job_id in claimed]
    assert len(ids) == JOBS and len(set(ids)) == JOBS, "a job was claimed twice, or one was never claimed"
    with engine.connect() as conn:
        holders = dict(conn.execute(sa.select(tables.scan_jobs.c.id, tables.scan_jobs.c.claimed_by)).all())
    assert holders == {job_id: worker for worker, job_id in claimed}


def test_a_job_whose_worker_died_is_claimed_again_and_failed_after_bounded_attempts(
    engine: sa.Engine,
) -> None:
    queue = ScanQueue(engine, lease_s=30)
    queue.enqueue({(_digest(7), ""): "model.bin"})
    (first,) = queue.claim("dead-worker")
    assert first.attempts == 1
    assert queue.claim("other") == [], "a held lease keeps the job from everyone else"
    _expire_leases(engine)
    (again,) = queue.claim("other")
    assert (again.id, again.attempts) == (first.id, 2)
    # The dead worker's late renewal does not take the job back from the one that holds it now.
    queue.renew("dead-worker", [first.id])
    with engine.connect() as conn:
        holder = conn.execute(sa.select(tables.scan_jobs.c.claimed_by)).scalar_one()
    assert holder == "other"
    for attempt in range(3, MAX_ATTEMPTS + 1):
        _expire_leases(engine)
        (job,) = queue.claim(f"worker-{attempt}")
        assert job.attempts == attempt
    _expire_leases(engine)
    assert queue.claim("last") == []
    progress = queue.progress([(_digest(7), "")])
    assert not progress.pending and not progress.unqueued
    failure = progress.failed[(_digest(7), "")]
    assert (failure.code, failure.status) == ("ScanFailed", 500)
    with engine.connect() as conn:
        assert conn.execute(sa.select(tables.scan_jobs.c.state)).scalar_one() == FAILED
    # Content uploaded (or committed) again is tried again.
    queue.enqueue({(_digest(7), ""): "model.bin"}, retry_failed_after=datetime.timedelta(0))
    assert len(queue.claim("fresh")) == 1


def test_jobs_of_another_scanner_version_are_dropped_unless_a_worker_holds_them(engine: sa.Engine) -> None:
    queue = ScanQueue(engine, lease_s=30)
    queue.enqueue({(_digest(n), ""): "f.bin" for n in range(3)})
    later = utcnow() + datetime.timedelta(minutes=5)
    with transaction(engine) as conn:
        jobs = tables.scan_jobs
        conn.execute(sa.update(jobs).where(jobs.c.sha256 != _digest(0)).values(scanner_version="older"))
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.sha256 == _digest(1))
            .values(state="running", lease_until=later, claimed_by="old-process")
        )
    queue.prune()
    with engine.connect() as conn:
        left = conn.execute(sa.select(tables.scan_jobs.c.sha256)).scalars().all()
    assert sorted(left) == sorted([_digest(0), _digest(1)])


# -- on a hub ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short wait keeps the ScanPending test fast; the scans themselves take milliseconds here.
    instance = start_server(
        tmp_path_factory.mktemp("scan-queue") / "data", env={"WEIGHTYARD_SCAN_WAIT": "0.3"}
    )
    yield instance
    stop_server(instance)


def _db(server: Server) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{server.data / 'weightyard.db'}")


def _await_report(server: Server, sha256: str, key: str) -> str:
    engine = _db(server)
    try:
        for _ in range(POLLS):
            with engine.connect() as conn:
                verdict = conn.execute(
                    sa.select(tables.scan_reports.c.verdict).where(
                        tables.scan_reports.c.sha256 == sha256, tables.scan_reports.c.name_key == key
                    )
                ).scalar()
            if verdict is not None:
                return str(verdict)
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"{sha256} was not scanned in the background")


def _lfs_put(server: Server, repo: str, content: bytes) -> None:
    """Upload `content` with the LFS batch API's basic transfer."""
    oid = hashlib.sha256(content).hexdigest()
    batch = httpx.post(
        f"{server.url}/{repo}.git/info/lfs/objects/batch",
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/vnd.git-lfs+json"},
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(content)}]},
    )
    (obj,) = batch.json()["objects"]
    httpx.put(obj["actions"]["upload"]["href"], content=content).raise_for_status()


def _hold_scan(engine: sa.Engine, sha256: str, key: str, path: str) -> None:
    """Another process holds the scan of this content (a long lease)."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tables.scan_jobs).values(
                sha256=sha256,
                name_key=key,
                scanner_version=SCANNER_VERSION,
                path=path,
                state="running",
                attempts=1,
                lease_until=utcnow() + datetime.timedelta(hours=1),
                claimed_by="elsewhere",
                created_at=utcnow(),
            )
        )


def test_an_upload_is_scanned_in_the_background_before_any_commit_names_it(
    hub: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo_name)
    content = b"\x00\x01weights" * 4096
    api.preupload_lfs_files(repo_name, additions=[CommitOperationAdd("weights.bin", content)])
    assert _await_report(hub, hashlib.sha256(content).hexdigest(), "") == "unscannable"


def test_an_lfs_upload_is_scanned_in_the_background_before_any_commit_names_it(
    hub: Server, repo_name: str
) -> None:
    HfApi(endpoint=hub.url, token=hub.token).create_repo(repo_name)
    content = b"cos\nsystem\n(S'echo WEIGHTYARD_MARKER'\ntR."  # only ever scanned, never loaded
    _lfs_put(hub, repo_name, content)
    assert _await_report(hub, hashlib.sha256(content).hexdigest(), "") == "unsafe"


def test_a_multipart_lfs_upload_is_scanned_in_the_background_once_completed(
    lfs_server: Server, repo_name: str
) -> None:
    HfApi(endpoint=lfs_server.url, token=lfs_server.token).create_repo(repo_name)
    part = 1024 * 1024  # the lfs_server fixture's part size
    content = os.urandom(2 * part + 5)
    oid = hashlib.sha256(content).hexdigest()
    batch = httpx.post(
        f"{lfs_server.url}/{repo_name}.git/info/lfs/objects/batch",
        headers={
            "Authorization": f"Bearer {lfs_server.token}",
            "Content-Type": "application/vnd.git-lfs+json",
        },
        json={
            "operation": "upload",
            "transfers": ["multipart"],
            "objects": [{"oid": oid, "size": len(content)}],
        },
    )
    (obj,) = batch.json()["objects"]
    upload = obj["actions"]["upload"]
    for number in (1, 2, 3):
        chunk = content[(number - 1) * part : number * part]
        httpx.put(upload["header"][str(number)], content=chunk).raise_for_status()
    httpx.post(upload["href"], json={"oid": oid, "parts": []}).raise_for_status()
    assert _await_report(lfs_server, oid, "") == "unscannable"  # random bytes are no known format


def test_a_commit_naming_content_whose_scan_failed_gets_the_failure_until_a_minute_has_passed(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    content = b"notes kept on a damaged disk\n"
    sha = hashlib.sha256(content).hexdigest()
    failure = {"code": "StoredContentDamaged", "status": 500, "message": "content is shorter than recorded"}
    engine = _db(server)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tables.scan_jobs).values(
                sha256=sha,
                name_key="",
                scanner_version=SCANNER_VERSION,
                path="notes.txt",
                state=FAILED,
                attempts=MAX_ATTEMPTS,
                lease_until=utcnow(),  # when it failed
                error=json.dumps(failure),
                created_at=utcnow(),
            )
        )
    for _ in range(2):  # the commit sent again gets the same answer: the failed scan is not redone for it
        with pytest.raises(HfHubHTTPError) as failed:
            api.upload_file(path_or_fileobj=content, path_in_repo="notes.txt", repo_id=repo_name)
        response = failed.value.response
        assert (response.status_code, response.headers["x-error-code"]) == (500, "StoredContentDamaged")
    with engine.begin() as conn:  # what a minute does (the disk was repaired meanwhile)
        conn.execute(
            sa.update(tables.scan_jobs)
            .where(tables.scan_jobs.c.sha256 == sha)
            .values(lease_until=utcnow() - datetime.timedelta(minutes=2))
        )
    engine.dispose()
    api.upload_file(path_or_fileobj=content, path_in_repo="notes.txt", repo_id=repo_name)
    assert _await_report(server, sha, "") == "safe"


def test_a_commit_whose_scan_is_still_running_is_a_retryable_503_and_lands_once_it_is_done(
    hub: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo_name)
    content = b'{"model_type": "slow"}'
    sha = hashlib.sha256(content).hexdigest()
    engine = _db(hub)
    _hold_scan(engine, sha, ".json", "config.json")
    head = api.model_info(repo_name).sha
    with pytest.raises(HfHubHTTPError) as pending:
        api.create_commit(
            repo_name, operations=[CommitOperationAdd("config.json", content)], commit_message="x"
        )
    response = pending.value.response
    assert (response.status_code, response.headers["x-error-code"]) == (503, "ScanPending")
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["pending"] == ["config.json"]
    assert api.model_info(repo_name).sha == head, "nothing was committed"
    # The other process dies: once its lease runs out, this hub's runner takes the job over.
    with engine.begin() as conn:
        conn.execute(
            sa.update(tables.scan_jobs)
            .where(tables.scan_jobs.c.sha256 == sha)
            .values(lease_until=utcnow() - datetime.timedelta(seconds=1))
        )
    engine.dispose()
    assert _await_report(hub, sha, ".json") == "safe"
    api.create_commit(repo_name, operations=[CommitOperationAdd("config.json", content)], commit_message="x")
    assert httpx.get(f"{hub.url}/{repo_name}/resolve/main/config.json").content == content


def test_a_commit_queues_again_the_scan_of_content_whose_report_was_removed(
    server: Server, repo_name: str
) -> None:
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(repo_name)
    content = b'{"model_type": "again"}'
    sha = hashlib.sha256(content).hexdigest()
    api.upload_file(path_or_fileobj=content, path_in_repo="a.json", repo_id=repo_name)
    engine = _db(server)
    with engine.begin() as conn:
        conn.execute(sa.delete(tables.scan_reports).where(tables.scan_reports.c.sha256 == sha))
    engine.dispose()
    api.upload_file(path_or_fileobj=content, path_in_repo="b.json", repo_id=repo_name)
    assert _await_report(server, sha, ".json") == "safe"


def test_weightyard_push_sends_its_commit_again_while_the_hub_answers_scan_pending(
    hub: Server, repo_name: str, tmp_path: Path
) -> None:
    HfApi(endpoint=hub.url, token=hub.token).create_repo(repo_name)
    folder = tmp_path / "model"
    folder.mkdir()
    content = b"a model card, still being scanned\n"
    (folder / "notes.txt").write_bytes(content)
    sha = hashlib.sha256(content).hexdigest()
    engine = _db(hub)
    _hold_scan(engine, sha, "", "notes.txt")
    answered: list[str] = []

    def release_once_refused(method: str, path: str, body: bytes) -> bytes:
        # The first 503 ScanPending reached the client: the process holding the scan dies.
        if "/commit/" in path and b"ScanPending" in body and not answered:
            answered.append(path)
            with engine.begin() as conn:
                conn.execute(
                    sa.update(tables.scan_jobs)
                    .where(tables.scan_jobs.c.sha256 == sha)
                    .values(lease_until=utcnow() - datetime.timedelta(seconds=1))
                )
        return body

    proxy = RewritingProxy(hub.url)
    proxy.rewrite = release_once_refused
    try:
        pushed = weightyard_cli("push", str(folder), repo_name, "--endpoint", proxy.url, "--token", hub.token)
    finally:
        proxy.close()
        engine.dispose()
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert answered, "the hub never answered ScanPending"
    assert httpx.get(f"{hub.url}/{repo_name}/resolve/main/notes.txt").content == content
