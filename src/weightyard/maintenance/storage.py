"""What gc and fsck share: walking stored objects, finding files without rows, and abandoned uploads.

Blob files live at `blobs/ab/cd/<sha256>`, xorbs at `xorbs/ab/<hash>`, temporary files in `blobs/.tmp`
(LFS multipart parts in `blobs/.tmp/parts/<upload id>/`). A file moves into place inside the write
transaction that records its row (see `LocalBlobStore.place` and `XetBlobStore.add_xorb`), so a file
found without its row while this module holds the same write lock is an orphan: left by a process killed
between the move and the commit. Nothing here ever removes a file whose row exists.
"""

from __future__ import annotations

import datetime
import functools
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.storage import LocalBlobStore, XetBlobStore

# Default age past which an unfinished upload counts as abandoned. Signed upload URLs live as long by
# default (WEIGHTYARD_UPLOAD_URL_TTL), so a younger upload may still be completed.
DEFAULT_UPLOAD_AGE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class StoredObject:
    kind: str  # "blob" or "xorb"
    name: str  # sha256, or the xorb hash as a string
    path: Path
    size: int


@dataclass(frozen=True)
class StaleUpload:
    kind: (
        str  # "lfs-upload" (a multipart upload row and its parts), "parts" (parts without a row), "temporary"
    )
    name: str
    path: Path
    size: int


def local_store(store: LocalBlobStore | XetBlobStore) -> LocalBlobStore:
    return store.base if isinstance(store, XetBlobStore) else store


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _newest_mtime(path: Path) -> float:
    try:
        times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")]
    except FileNotFoundError:
        return time.time()
    return max(times)


def blob_files(store: LocalBlobStore, prefix: str | None = None) -> Iterator[StoredObject]:
    """Every whole-blob file (under one two-character prefix folder when given)."""
    roots = [store.root / prefix] if prefix else sorted(p for p in store.root.iterdir() if p.is_dir())
    for top in roots:
        if top.name.startswith(".") or not top.is_dir():
            continue
        for path in sorted(top.glob("*/*")):
            if path.is_file():
                yield StoredObject("blob", path.name, path, path.stat().st_size)


def xorb_files(store: XetBlobStore, prefix: str | None = None) -> Iterator[StoredObject]:
    roots = (
        [store.xorb_root / prefix] if prefix else sorted(p for p in store.xorb_root.iterdir() if p.is_dir())
    )
    for top in roots:
        if not top.is_dir():
            continue
        for path in sorted(top.iterdir()):
            if path.is_file():
                yield StoredObject("xorb", path.name, path, path.stat().st_size)


def _prefixes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _recorded(conn: sa.Connection, column: sa.Column[str], names: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(names), 500):
        found |= set(conn.execute(sa.select(column).where(column.in_(names[start : start + 500]))).scalars())
    return found


def orphans(engine: sa.Engine, store: LocalBlobStore | XetBlobStore, remove: bool) -> list[StoredObject]:
    """Blob and xorb files without a row; removed when `remove`.

    Each prefix folder is listed and compared inside one write transaction, which no placement can be in
    the middle of (placements happen inside theirs), so a file being stored right now is never taken.
    """
    base = local_store(store)
    found = [
        item
        for prefix in _prefixes(base.root)
        for item in _orphans_in(
            engine, functools.partial(blob_files, base, prefix), tables.blobs.c.sha256, remove
        )
    ]
    if isinstance(store, XetBlobStore):
        found += [
            item
            for prefix in _prefixes(store.xorb_root)
            for item in _orphans_in(
                engine, functools.partial(xorb_files, store, prefix), tables.xet_xorbs.c.hash, remove
            )
        ]
    return found


def _orphans_in(
    engine: sa.Engine, listing: Callable[[], Iterator[StoredObject]], column: sa.Column[str], remove: bool
) -> list[StoredObject]:
    with transaction(engine) as conn:
        files = list(listing())
        recorded = _recorded(conn, column, [f.name for f in files])
        lost = [f for f in files if f.name not in recorded]
        if remove:
            for item in lost:
                item.path.unlink(missing_ok=True)
    return lost


def stale_uploads(
    engine: sa.Engine, store: LocalBlobStore | XetBlobStore, staging: Path, older_than: datetime.timedelta
) -> list[StaleUpload]:
    """Unfinished uploads older than `older_than`: multipart upload rows and their parts, parts folders
    without a row, and temporary files of interrupted writes."""
    cutoff = utcnow() - older_than
    cutoff_seconds = time.time() - older_than.total_seconds()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tables.lfs_uploads.c.id, tables.lfs_uploads.c.created_at)).all()
    known = {row.id for row in rows}
    found = [
        StaleUpload("lfs-upload", row.id, staging / row.id, _size(staging / row.id))
        for row in rows
        if row.created_at < cutoff
    ]
    if staging.is_dir():
        for folder in sorted(staging.iterdir()):
            if folder.name not in known and _newest_mtime(folder) < cutoff_seconds:
                found.append(StaleUpload("parts", folder.name, folder, _size(folder)))
    tmp = local_store(store).tmp_dir
    for path in sorted(tmp.iterdir()):
        if path.is_file() and path.stat().st_mtime < cutoff_seconds:
            found.append(StaleUpload("temporary", path.name, path, path.stat().st_size))
    return found


def remove_uploads(engine: sa.Engine, uploads: list[StaleUpload]) -> None:
    """Forget the rows first, then delete the files: a crash in between leaves files without rows, which
    the next run finds again."""
    rows = [item.name for item in uploads if item.kind == "lfs-upload"]
    if rows:
        with transaction(engine) as conn:
            conn.execute(sa.delete(tables.lfs_uploads).where(tables.lfs_uploads.c.id.in_(rows)))
    for item in uploads:
        if item.path.is_dir():
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)
