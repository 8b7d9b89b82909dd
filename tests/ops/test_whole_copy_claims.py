"""The whole-copy queue between processes, on each database: one holder per job, harmless double builds, and
an upload over a copy turning it into a blob that eviction never removes (repos/copies.py)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from weightyard.config import Settings
from weightyard.db import tables, utcnow
from weightyard.hub import Hub
from weightyard.maintenance.fsck import check
from weightyard.maintenance.gc import collect
from weightyard.repos.content import WholeBlobWriter
from weightyard.repos.copies import WholeCopies
from weightyard.repos.objects import FileEntry
from weightyard.storage import BLOBS

MIB = 1024 * 1024


@pytest.fixture(params=["sqlite", "postgresql"])
def packing_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A hub in this process that keeps every upload as xorbs (`xet://`), on each database."""
    url = None if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    data = tmp_path / "data"
    instance = Hub.open(Settings(data=data, database_url=url, blob_url=f"xet://{data / 'blobs'}"))
    yield instance
    instance.close()


def stored_as_xorbs(hub: Hub, data: bytes) -> str:
    writer = hub.store.writer()
    writer.write(data)
    blob = writer.commit()
    # Set-up: the content's row, as the upload route that received it records it.
    with hub.engine.begin() as conn:
        conn.execute(sa.insert(tables.blobs).values(sha256=blob.sha256, size=blob.size, created_at=utcnow()))
    assert not hub.store.has_whole_blob(blob.sha256)
    return blob.sha256


def copies(hub: Hub) -> set[str]:
    with hub.engine.connect() as conn:
        return set(conn.execute(sa.select(tables.whole_copies.c.sha256)).scalars())


def jobs(hub: Hub) -> list[str]:
    with hub.engine.connect() as conn:
        return list(conn.execute(sa.select(tables.copy_jobs.c.sha256)).scalars())


def whole(hub: Hub, sha: str) -> bytes:
    return b"".join(bytes(piece) for piece in hub.store.objects.read(BLOBS, sha, 0, 1 << 40, MIB))


def test_two_processes_never_hold_one_copy_job_and_a_build_after_a_lapsed_lease_is_harmless(
    packing_hub: Hub,
) -> None:
    data = os.urandom(300_000)
    sha = stored_as_xorbs(packing_hub, data)
    first, second = (WholeCopies(packing_hub.engine, packing_hub.store, MIB, lease_s=60) for _ in range(2))
    first.enqueue([sha])
    second.enqueue([sha])
    assert jobs(packing_hub) == [sha], "one job per content, whichever process queued it"
    job = first.claim()
    assert job is not None and job.sha256 == sha
    assert second.claim() is None, "a held job is not claimed again"
    first.build(job)
    assert copies(packing_hub) == {sha} and jobs(packing_hub) == []
    assert whole(packing_hub, sha) == data

    # A process that stalls past its lease: another claims the same job, and both build it.
    other = os.urandom(200_000)
    sha = stored_as_xorbs(packing_hub, other)
    stalled, taker = (WholeCopies(packing_hub.engine, packing_hub.store, MIB, lease_s=0) for _ in range(2))
    stalled.enqueue([sha])
    late, early = stalled.claim(), taker.claim()
    assert late is not None and early is not None and late.sha256 == early.sha256 == sha
    taker.build(early)
    stalled.build(late)
    assert sha in copies(packing_hub) and jobs(packing_hub) == []
    assert whole(packing_hub, sha) == other


def test_an_upload_over_a_copy_makes_it_an_uploaded_blob_that_the_budget_never_evicts(
    packing_hub: Hub,
) -> None:
    budget = 500_000
    data, newer = os.urandom(300_000), os.urandom(300_000)
    sha = stored_as_xorbs(packing_hub, data)
    worker = WholeCopies(packing_hub.engine, packing_hub.store, budget, lease_s=60)
    worker.enqueue([sha])
    assert worker.run_once() and copies(packing_hub) == {sha}

    upload = WholeBlobWriter(packing_hub.store, packing_hub.store.objects.blob_writer(sha))
    upload.write(data)
    upload.commit(expected_sha256=sha)
    assert copies(packing_hub) == set(), "an uploaded whole blob is not a copy"

    # The uploaded blob does not count against the budget: a new copy fits beside it.
    newer_sha = stored_as_xorbs(packing_hub, newer)
    worker.enqueue([newer_sha])
    assert worker.run_once()
    assert copies(packing_hub) == {newer_sha}
    assert whole(packing_hub, sha) == data

    # A third copy evicts the least recently served copy, never the uploaded blob.
    third = os.urandom(300_000)
    third_sha = stored_as_xorbs(packing_hub, third)
    worker.enqueue([third_sha])
    assert worker.run_once()
    assert copies(packing_hub) == {third_sha}
    assert not packing_hub.store.has_whole_blob(newer_sha)
    assert whole(packing_hub, sha) == data and whole(packing_hub, third_sha) == third


def test_a_copy_whose_content_gc_collected_while_it_was_written_is_not_recorded_and_its_object_goes(
    packing_hub: Hub,
) -> None:
    data = os.urandom(300_000)
    sha = stored_as_xorbs(packing_hub, data)
    worker = WholeCopies(packing_hub.engine, packing_hub.store, MIB, lease_s=60)
    worker.enqueue([sha])
    job = worker.claim()
    assert job is not None
    # gc takes the unreferenced content (its row, its pending job) after the claim, before the copy is
    # recorded; its xorbs, used within the hour, stay. Set-up: the content was uploaded two hours ago.
    with packing_hub.engine.begin() as conn:
        two_hours_ago = utcnow() - datetime.timedelta(hours=2)
        conn.execute(
            sa.update(tables.blobs).where(tables.blobs.c.sha256 == sha).values(created_at=two_hours_ago)
        )
    report = collect(packing_hub, datetime.timedelta(hours=1))
    assert report.blobs == 1 and jobs(packing_hub) == []
    worker.build(job)
    assert copies(packing_hub) == set()
    assert not packing_hub.store.has_whole_blob(sha), "no object without its row"


def test_a_download_whose_copy_is_evicted_before_its_first_byte_is_rebuilt_from_the_xorbs(
    packing_hub: Hub,
) -> None:
    data, other = os.urandom(300_000), os.urandom(300_000)
    sha = stored_as_xorbs(packing_hub, data)
    worker = WholeCopies(packing_hub.engine, packing_hub.store, 500_000, lease_s=60)
    worker.enqueue([sha])
    assert worker.run_once() and copies(packing_hub) == {sha}
    download = packing_hub.store.iter_range(sha, 0, len(data), MIB)  # checked and begun: headers sent
    worker.enqueue([stored_as_xorbs(packing_hub, other)])
    assert worker.run_once() and sha not in copies(packing_hub), "evicted to make room"
    assert not packing_hub.store.has_whole_blob(sha)
    assert b"".join(bytes(piece) for piece in download) == data


def test_a_download_queues_its_copy_only_once_its_response_is_over(packing_hub: Hub) -> None:
    # The copy rebuilds the same file from its xorbs: beside the download it would take its cores.
    data = os.urandom(3 * MIB)
    sha = stored_as_xorbs(packing_hub, data)
    entry = FileEntry(sha256=sha, size=len(data), lfs=True, git_oid="0" * 40)
    download = packing_hub.repos.download(entry, 0, len(data), MIB)
    received = bytes(next(download))
    packing_hub.repos.copies.flush()
    assert jobs(packing_hub) == [], "still sending: no copy job yet"
    received += b"".join(bytes(piece) for piece in download)
    assert received == data
    packing_hub.repos.copies.flush()
    assert jobs(packing_hub) == [sha], "sent: the copy is queued"

    # A client that goes away mid-download has asked for the file all the same.
    other = os.urandom(2 * MIB)
    other_sha = stored_as_xorbs(packing_hub, other)
    given_up = packing_hub.repos.download(
        FileEntry(other_sha, len(other), True, "0" * 40), 0, len(other), MIB
    )
    next(given_up)
    packing_hub.repos.copies.flush()
    assert other_sha not in jobs(packing_hub)
    given_up.close()
    packing_hub.repos.copies.flush()
    assert other_sha in jobs(packing_hub)


def test_a_stopping_process_gives_its_unfinished_copy_job_back_without_using_an_attempt(
    packing_hub: Hub,
) -> None:
    data = os.urandom(300_000)
    sha = stored_as_xorbs(packing_hub, data)
    stopping = WholeCopies(packing_hub.engine, packing_hub.store, MIB, lease_s=60)
    stopping.enqueue([sha])
    stopping.stop_background()  # the process is shutting down: its copy thread stops between pieces
    assert stopping.run_once()
    assert copies(packing_hub) == set() and not packing_hub.store.has_whole_blob(sha)
    assert list(packing_hub.store.objects.list_scratch()) == [], "the partial copy is discarded"
    with packing_hub.engine.connect() as conn:
        job = conn.execute(sa.select(tables.copy_jobs)).one()
    assert (job.state, job.attempts, job.claimed_by) == ("queued", 0, None)
    other = WholeCopies(packing_hub.engine, packing_hub.store, MIB, lease_s=60)
    assert other.run_once() and copies(packing_hub) == {sha} and whole(packing_hub, sha) == data


def test_fsck_reports_a_damaged_whole_copy_as_repairable_and_the_repair_drops_it(packing_hub: Hub) -> None:
    cut, flipped = os.urandom(300_000), os.urandom(300_000)
    worker = WholeCopies(packing_hub.engine, packing_hub.store, MIB, lease_s=60)
    shas = [stored_as_xorbs(packing_hub, data) for data in (cut, flipped)]
    worker.enqueue(shas)
    assert worker.run_once() and worker.run_once() and copies(packing_hub) == set(shas)
    blobs = packing_hub.settings.data / "blobs"
    os.truncate(next(blobs.rglob(shas[0])), 1000)
    damaged = bytearray(flipped)
    damaged[1000] ^= 0xFF
    next(blobs.rglob(shas[1])).write_bytes(bytes(damaged))

    found = {p.subject: p for p in check(packing_hub, rehash=True).problems}
    assert (found[shas[0]].kind, found[shas[1]].kind) == ("blob-truncated", "blob-corrupt")
    assert found[shas[0]].repairable and found[shas[1]].repairable
    repaired = check(packing_hub, rehash=True, repair=True)
    assert {p.subject for p in repaired.problems if p.repaired} >= set(shas) and not repaired.unresolved
    assert copies(packing_hub) == set() and not any(packing_hub.store.has_whole_blob(sha) for sha in shas)
    for sha, data in zip(shas, (cut, flipped), strict=True):
        assert b"".join(bytes(p) for p in packing_hub.store.iter_range(sha, 0, len(data), MIB)) == data
    assert check(packing_hub, rehash=True).problems == ()
