"""What gc and fsck share: finding stored objects without rows, and abandoned uploads.

An object is made visible just before the write transaction that records its row (see `ContentStore.place`
and `ContentStore.add_xorb`), so an object without its row is either left by a writer that died between
the two, or one whose writer is on its way to its transaction. Removing the second kind is safe (that
writer's transaction sees its object gone and fails with a retryable error, recording nothing) but makes an
honest upload start again, so gc removes only objects older than its upload age. Nothing here ever removes
an object whose row exists.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.repos.content import ContentStore
from weightyard.storage import BLOBS, XORBS, Namespace

# Default age past which an unfinished upload counts as abandoned. Signed upload URLs live as long by
# default (WEIGHTYARD_UPLOAD_URL_TTL), so a younger upload may still be completed.
DEFAULT_UPLOAD_AGE = datetime.timedelta(days=1)
_BATCH = 500


@dataclass(frozen=True)
class StoredObject:
    kind: str  # "blob" or "xorb"
    name: str  # sha256, or the xorb hash as a string
    size: int


@dataclass(frozen=True)
class StaleUpload:
    # "lfs-upload" (a multipart upload row and its parts), "parts" (parts without a row), "temporary"
    kind: str
    name: str
    size: int


_KINDS: dict[Namespace, str] = {BLOBS: "blob", XORBS: "xorb"}


def _recorded(conn: sa.Connection, column: sa.Column[str], names: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(names), _BATCH):
        found |= set(
            conn.execute(sa.select(column).where(column.in_(names[start : start + _BATCH]))).scalars()
        )
    return found


def orphans(
    engine: sa.Engine, content: ContentStore, remove: bool, older_than: datetime.timedelta | None = None
) -> list[StoredObject]:
    """Blob and xorb objects without a row (and, with `older_than`, last written before that long ago);
    removed when `remove`.

    Objects are listed without a lock; those without a row are checked again inside one write transaction,
    so an object whose row was committed meanwhile is never taken.
    """
    cutoff = None if older_than is None else time.time() - older_than.total_seconds()
    spaces: list[tuple[Namespace, sa.Column[str]]] = [(BLOBS, tables.blobs.c.sha256)]
    if content.xet:
        spaces.append((XORBS, tables.xet_xorbs.c.hash))
    found: list[StoredObject] = []
    for namespace, column in spaces:
        listed = {
            item.key: item.size
            for item in content.objects.list(namespace)
            if cutoff is None or item.mtime < cutoff
        }
        with engine.connect() as conn:
            suspects = sorted(set(listed) - _recorded(conn, column, sorted(listed)))
        if not suspects:
            continue
        with transaction(engine) as conn:
            lost = sorted(set(suspects) - _recorded(conn, column, suspects))
            for name in lost:
                size = content.objects.size(namespace, name)
                if size is None:
                    continue
                found.append(StoredObject(_KINDS[namespace], name, size))
                if remove:
                    content.objects.delete(namespace, name)
    return found


def stale_uploads(
    engine: sa.Engine, content: ContentStore, older_than: datetime.timedelta
) -> list[StaleUpload]:
    """Unfinished uploads older than `older_than`: multipart upload rows and their parts, parts without a
    row, and scratch files of interrupted writes."""
    cutoff = utcnow() - older_than
    cutoff_seconds = time.time() - older_than.total_seconds()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tables.lfs_uploads.c.id, tables.lfs_uploads.c.created_at)).all()
    staged = {item.key: item for item in content.objects.list_uploads()}
    known = {row.id for row in rows}
    found = [
        StaleUpload("lfs-upload", row.id, staged[row.id].size if row.id in staged else 0)
        for row in rows
        if row.created_at < cutoff
    ]
    found += [
        StaleUpload("parts", item.key, item.size)
        for item in staged.values()
        if item.key not in known and item.mtime < cutoff_seconds
    ]
    found += [
        StaleUpload("temporary", item.key, item.size)
        for item in content.objects.list_scratch()
        if item.mtime < cutoff_seconds
    ]
    return found


def remove_uploads(engine: sa.Engine, content: ContentStore, uploads: list[StaleUpload]) -> None:
    """Forget the rows first, then delete the bytes: a crash in between leaves parts without rows, which
    the next run finds again."""
    rows = [item.name for item in uploads if item.kind == "lfs-upload"]
    if rows:
        with transaction(engine) as conn:
            conn.execute(sa.delete(tables.lfs_uploads).where(tables.lfs_uploads.c.id.in_(rows)))
    for item in uploads:
        if item.kind == "temporary":
            content.objects.delete_scratch(item.name)
        else:
            content.objects.delete_upload(item.name)
