"""`weightyard gc`: everything stored that nothing can reach any more.

* abandoned uploads older than the upload age (default a day): multipart upload rows and their parts,
  parts without a row, temporary files of interrupted writes;
* files without a row (a process killed between moving a file into place and committing its row);
* whole blobs (and their rows) that no commit of any repo references and nobody uploaded within the upload
  age: content of deleted repos or branches, uploads never committed;
* Xet xorbs no commit reaches and no upload used within the xorb grace period (28 days by default, because
  clients keep naming xorbs from their caches that long; an explicit upload age applies to xorbs too).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.maintenance.storage import (
    DEFAULT_UPLOAD_AGE,
    local_store,
    orphans,
    remove_uploads,
    stale_uploads,
)
from weightyard.repos.xet import GC_GRACE

if TYPE_CHECKING:
    from weightyard.hub import Hub

_BATCH = 500


@dataclass(frozen=True)
class GcReport:
    """What a collection removed (or, with `dry_run`, would remove), by kind; `bytes_freed` in all."""

    dry_run: bool
    uploads: int
    upload_bytes: int
    orphans: int
    orphan_bytes: int
    blobs: int
    blob_bytes: int
    xorbs: int
    xorb_bytes: int
    files: int
    bytes_freed: int


def collect(
    hub: Hub, uploads_older_than: datetime.timedelta | None = None, dry_run: bool = False
) -> GcReport:
    """Remove what nothing can reach (see the module docstring); report what and how much.

    Example:
        >>> collect(hub, datetime.timedelta(hours=12), dry_run=True).bytes_freed  # doctest: +SKIP
        5532108800
    """
    age = uploads_older_than if uploads_older_than is not None else DEFAULT_UPLOAD_AGE
    uploads = stale_uploads(hub.engine, hub.store, hub.lfs.staging, age)
    if not dry_run:
        remove_uploads(hub.engine, uploads)
    lost = orphans(hub.engine, hub.store, remove=not dry_run)
    referenced, blobs, blob_bytes = _unreferenced_blobs(hub, age, dry_run)
    xorbs = xorb_bytes = files = 0
    if hub.xet is not None:
        grace = uploads_older_than if uploads_older_than is not None else GC_GRACE
        xet = hub.xet.gc(dry_run=dry_run, grace=grace, reachable=referenced)
        xorbs, xorb_bytes, files = xet.xorbs, xet.bytes_freed, xet.files
    upload_bytes = sum(item.size for item in uploads)
    orphan_bytes = sum(item.size for item in lost)
    return GcReport(
        dry_run=dry_run,
        uploads=len(uploads),
        upload_bytes=upload_bytes,
        orphans=len(lost),
        orphan_bytes=orphan_bytes,
        blobs=blobs,
        blob_bytes=blob_bytes,
        xorbs=xorbs,
        xorb_bytes=xorb_bytes,
        files=files,
        bytes_freed=upload_bytes + orphan_bytes + blob_bytes + xorb_bytes,
    )


def _unreferenced_blobs(hub: Hub, age: datetime.timedelta, dry_run: bool) -> tuple[set[str], int, int]:
    """Remove blobs no commit references and nobody uploaded within `age`; returns the referenced content,
    and how many blobs and bytes went.

    Trees are walked outside any lock; then, holding the write lock (no commit can land meanwhile), only
    the commits that landed during the walk are read, ages are checked again, and rows and files go together.
    """
    referenced, last = hub.repos.referenced_content()
    cutoff = utcnow() - age
    blobs = tables.blobs
    with hub.engine.connect() as conn:
        old = {
            row.sha256 for row in conn.execute(sa.select(blobs.c.sha256).where(blobs.c.created_at < cutoff))
        }
    candidates = sorted(old - referenced)
    base = local_store(hub.store)
    if dry_run:
        return referenced, len(candidates), sum(_file_size(base.path_for(sha)) for sha in candidates)
    freed = removed = 0
    with transaction(hub.engine) as conn:
        newer, _ = hub.repos.referenced_content(after=last)
        referenced |= newer
        for start in range(0, len(candidates), _BATCH):
            batch = [sha for sha in candidates[start : start + _BATCH] if sha not in referenced]
            doomed = list(
                conn.execute(
                    sa.select(blobs.c.sha256).where(blobs.c.sha256.in_(batch), blobs.c.created_at < cutoff)
                ).scalars()
            )
            conn.execute(sa.delete(tables.blob_grants).where(tables.blob_grants.c.sha256.in_(doomed)))
            conn.execute(sa.delete(blobs).where(blobs.c.sha256.in_(doomed)))
            for sha in doomed:
                # Under the write lock, as placements are: a new upload of this content cannot slip in.
                path = base.path_for(sha)
                freed += _file_size(path)
                path.unlink(missing_ok=True)
            removed += len(doomed)
    return referenced, removed, freed


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
