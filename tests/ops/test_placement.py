"""A stored file moves into place only with its row: when the row's transaction fails (a full disk, a
broken database), the file moves out again, so no file stays without a row."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from weightyard.db import create_engine, migrate
from weightyard.repos.content import ContentStore
from weightyard.storage import BLOBS, XORBS, LocalObjectStore
from weightyard.xet import serialize_xorb


def _engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'weightyard.db'}")
    migrate(engine)
    return engine


def test_a_blob_whose_row_cannot_be_written_is_not_left_in_place(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    store = ContentStore(LocalObjectStore(tmp_path / "blobs"), engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE blob_grants")
        conn.exec_driver_sql("ALTER TABLE blobs RENAME TO blobs_gone")
    data = b"weightyard placement test\n" * 1000
    writer = store.writer()
    writer.write(data)
    with pytest.raises(sa.exc.OperationalError):
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
