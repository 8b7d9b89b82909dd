"""A stored object is recorded by a row, never the other way round: the object is stored first, outside the
write lock (on S3 a network call, which must not hold up every other write), and the transaction recording
it checks that it is still there. When the row's transaction fails (a full disk, a broken database), the
object goes again unless another writer recorded the same content meanwhile."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from weightyard.db import create_engine, migrate, transaction
from weightyard.errors import ContentCollected
from weightyard.repos.content import ContentStore
from weightyard.storage import BLOBS, XORBS, BlobInfo, LocalObjectStore
from weightyard.xet import serialize_xorb


def _engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'weightyard.db'}")
    migrate(engine)
    return engine


def test_a_blob_whose_row_cannot_be_written_is_not_left_in_place(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    store = ContentStore(LocalObjectStore(tmp_path / "blobs"), engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER full_disk BEFORE INSERT ON blobs BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    data = b"weightyard placement test\n" * 1000
    writer = store.writer()
    writer.write(data)
    with pytest.raises(sa.exc.IntegrityError):
        writer.commit()
    assert store.objects.size(BLOBS, hashlib.sha256(data).hexdigest()) is None
    assert list(store.objects.list_scratch()) == [], "the written bytes are discarded too"


def test_a_xorb_whose_row_cannot_be_written_is_not_left_in_place(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    store = ContentStore(LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs"), engine, xet=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE xet_chunks")
    body, info = serialize_xorb([random.Random(1).randbytes(50_000)])
    with pytest.raises(sa.exc.OperationalError):
        store.add_xorb(body, info, None)
    assert list(store.objects.list(XORBS)) == []
    assert [p for p in (tmp_path / "xorbs").rglob("*") if p.is_file()] == []


def test_an_object_is_stored_before_the_write_lock_is_taken(tmp_path: Path) -> None:
    """Storing bytes (on S3 a network call, or a server-side copy of every part) never holds the write lock:
    while another transaction holds it, the object is already stored; its row follows once the lock is
    free."""
    engine = _engine(tmp_path)
    store = ContentStore(LocalObjectStore(tmp_path / "blobs"), engine)
    data = b"stored while another writer holds the lock\n" * 1000
    sha = hashlib.sha256(data).hexdigest()
    writer = store.writer()
    writer.write(data)
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            writer.commit(expected_sha256=sha)
        except BaseException as exc:
            errors.append(exc)

    with transaction(engine):
        thread = threading.Thread(target=commit)
        thread.start()
        deadline = time.monotonic() + 30  # bounded; a busy disk can take seconds to store the bytes
        while store.objects.size(BLOBS, sha) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.objects.size(BLOBS, sha) == len(data), "the bytes were stored while the lock was held"
        assert thread.is_alive(), "the row waits for the lock"
    thread.join(timeout=60)
    assert errors == []
    with engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT size FROM blobs WHERE sha256 = :s"), {"s": sha}).scalar()
    assert recorded == len(data)


def test_content_collected_between_storing_and_recording_is_refused_retryably(tmp_path: Path) -> None:
    """gc deletes under the write lock; if it took the object between the store and the row, the writer
    records nothing (no row without its object) and says to send it again; the next try succeeds."""
    engine = _engine(tmp_path)
    store = ContentStore(LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs"), engine, xet=True)
    data = b"collected in between\n" * 1000
    blob = BlobInfo(hashlib.sha256(data).hexdigest(), len(data))

    def store_then_collect() -> bool:
        writer = store.objects.blob_writer(blob.sha256)
        writer.write(data)
        writer.seal(blob.sha256, blob.size)
        created = writer.publish()
        store.objects.delete(BLOBS, blob.sha256)  # what gc does under the lock, just before the writer's turn
        return created

    with pytest.raises(ContentCollected) as refused:
        store.place(store_then_collect, blob)
    assert refused.value.status == 503 and refused.value.retry_after > 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM blobs")).scalar() == 0
    writer = store.writer()
    writer.write(data)
    assert writer.commit(expected_sha256=blob.sha256) == blob
    assert store.objects.size(BLOBS, blob.sha256) == blob.size

    body, info = serialize_xorb([random.Random(2).randbytes(50_000)])
    original = store.objects.put_xorb

    def put_then_collect(key: str, data: object) -> bool:
        created = original(key, data)  # type: ignore[arg-type]
        store.objects.delete(XORBS, key)
        return created

    store.objects.put_xorb = put_then_collect  # type: ignore[method-assign]
    with pytest.raises(ContentCollected):
        store.add_xorb(body, info, None)
    store.objects.put_xorb = original  # type: ignore[method-assign]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM xet_xorbs")).scalar() == 0
    assert store.add_xorb(body, info, None)
    assert store.has_xorb(info.hash)
