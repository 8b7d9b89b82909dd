"""`weightyard gc`: everything stored that nothing can reach any more.

* abandoned uploads older than the upload age (default a day): multipart upload rows and their parts,
  parts without a row, temporary files of interrupted writes;
* objects without a row, older than the upload age (a process killed between storing an object and
  committing its row);
* whole blobs (and their rows) that no commit of any repo references and nobody uploaded within the upload
  age: content of deleted repos or branches, uploads never committed; a whole copy of such content kept for
  plain-HTTP downloads (repos/copies.py) goes with it;
* Xet xorbs no commit reaches and no upload used within the xorb grace period (28 days by default, because
  clients keep naming xorbs from their caches that long; an explicit upload age applies to xorbs too).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.faults import crash_point
from weightyard.maintenance.storage import (
    DEFAULT_UPLOAD_AGE,
    orphans,
    remove_uploads,
    stale_uploads,
)
from weightyard.repos.content import forget_copies
from weightyard.repos.xet import GC_GRACE
from weightyard.storage import BLOBS

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
    uploads = stale_uploads(hub.engine, hub.store, age)
    if not dry_run:
        remove_uploads(hub.engine, hub.store, uploads)
    lost = orphans(hub.engine, hub.store, remove=not dry_run, older_than=age)
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

    Marked outside any lock: the trees are walked and the candidates listed. Then, under the write lock (no
    commit and no upload can land meanwhile), the commits that landed during the walk are read, ages are
    checked again, and the rows go. The files go after that transaction, in a second one that skips any
    content whose row came back meanwhile (an upload of the same content stored it again): a crash in
    between leaves files without rows, which the next collection removes, never a row without its file.
    """
    referenced, last = hub.repos.referenced_content()
    cutoff = utcnow() - age
    blobs = tables.blobs
    with hub.engine.connect() as conn:
        old = dict(
            conn.execute(sa.select(blobs.c.sha256, blobs.c.size).where(blobs.c.created_at < cutoff)).all()
        )
    candidates = sorted(set(old) - referenced)
    if dry_run:
        return referenced, len(candidates), sum(int(old[sha]) for sha in candidates)
    doomed: dict[str, int] = {}
    with transaction(hub.engine) as conn:
        newer, _ = hub.repos.referenced_content(after=last)
        referenced |= newer
        for start in range(0, len(candidates), _BATCH):
            batch = [sha for sha in candidates[start : start + _BATCH] if sha not in referenced]
            rows = conn.execute(
                sa.select(blobs.c.sha256, blobs.c.size).where(
                    blobs.c.sha256.in_(batch), blobs.c.created_at < cutoff
                )
            ).all()
            names = [row.sha256 for row in rows]
            conn.execute(sa.delete(tables.blob_grants).where(tables.blob_grants.c.sha256.in_(names)))
            # A whole copy goes with its content (its object with the blob's, below); so does a pending job.
            forget_copies(conn, names)
            conn.execute(sa.delete(blobs).where(blobs.c.sha256.in_(names)))
            doomed.update((row.sha256, int(row.size)) for row in rows)
    crash_point("gc.rows_deleted")
    objects = hub.store.objects
    names = sorted(doomed)
    removed = 0
    freed = 0
    with transaction(hub.engine) as conn:
        for start in range(0, len(names), _BATCH):
            batch = names[start : start + _BATCH]
            stored_again = set(
                conn.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256.in_(batch))).scalars()
            )
            for sha in batch:
                # Under the write lock: an upload of this content that stored its object meanwhile finds it
                # gone in its own transaction and fails, retryably, instead of recording a missing object.
                if sha not in stored_again:
                    objects.delete(BLOBS, sha)
                    removed += 1
                    freed += doomed[sha]
    return referenced, removed, freed
