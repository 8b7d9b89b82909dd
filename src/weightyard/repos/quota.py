"""`WEIGHTYARD_MAX_REPO_SIZE` as a quota: uploads are counted against it before their bytes are accepted.

A repo's usage is the size of every distinct content any of its revisions names (from the gate's content
index) plus its pending uploads: LFS objects a batch request let a client upload and xorbs stored with the
repo's Xet token, which no commit names yet. Without counting those, a client could store any amount under
a 1 MB limit by uploading and never committing. A pending upload stops counting once a commit names it, or
once it is older than the upload grace period (the lifetime of the signed upload URLs); removing what was
never committed is the garbage collector's job.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.db import tables, transaction, utcnow
from weightyard.errors import RepoQuotaExceeded

LFS, XORB = "lfs", "xorb"


def _exceeded(repo_id: str, limit: int, usage: int, adding: int) -> RepoQuotaExceeded:
    return RepoQuotaExceeded(
        f"{repo_id} holds {usage} bytes (committed files and pending uploads); {adding} more would pass "
        f"its limit of {limit} bytes"
    )


@dataclass
class ByteBudget:
    """What one streaming request (an inline commit, a xorb) may still bring in for a repo."""

    repo_id: str
    limit: int
    usage: int
    taken: int = 0

    def take(self, size: int) -> None:
        self.taken += size
        if self.usage + self.taken > self.limit:
            raise _exceeded(self.repo_id, self.limit, self.usage, self.taken)


class RepoQuota:
    """The size limit of every repo (0: none); `grace_seconds` is how long an uncommitted upload counts."""

    def __init__(self, engine: sa.Engine, limit: int, grace_seconds: int) -> None:
        self._engine = engine
        self._limit = limit
        self._grace = datetime.timedelta(seconds=grace_seconds)

    def _usage(self, conn: sa.Connection, repo_id: int) -> int:
        contents, blobs, pending = tables.repo_contents, tables.blobs, tables.upload_reservations
        committed = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(blobs.c.size), 0))
            .select_from(contents.join(blobs, blobs.c.sha256 == contents.c.sha256))
            .where(contents.c.repo_id == repo_id)
        ).scalar_one()
        # An LFS object is committed once the repo's content index holds its sha256; a xorb once a file of
        # the repo is made from it.
        lfs_committed = sa.exists().where(
            contents.c.repo_id == pending.c.repo_id, contents.c.sha256 == pending.c.digest
        )
        xorb_committed = (
            sa.exists()
            .select_from(
                tables.xet_file_xorbs.join(
                    tables.xet_files, tables.xet_files.c.file_hash == tables.xet_file_xorbs.c.file_hash
                ).join(contents, contents.c.sha256 == tables.xet_files.c.sha256)
            )
            .where(
                tables.xet_file_xorbs.c.xorb_hash == pending.c.digest, contents.c.repo_id == pending.c.repo_id
            )
        )
        uncommitted = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(pending.c.size), 0)).where(
                pending.c.repo_id == repo_id,
                pending.c.created_at >= utcnow() - self._grace,
                sa.or_(
                    sa.and_(pending.c.kind == LFS, ~lfs_committed),
                    sa.and_(pending.c.kind == XORB, ~xorb_committed),
                ),
            )
        ).scalar_one()
        return int(committed) + int(uncommitted)

    def budget(self, repo_id: int, repo_name: str) -> ByteBudget | None:
        """The bytes a streaming upload to the repo may bring in; None when repos have no limit."""
        if not self._limit:
            return None
        with self._engine.connect() as conn:
            return ByteBudget(repo_name, self._limit, self._usage(conn, repo_id))

    def reserve(self, repo_id: int, repo_name: str, kind: str, items: Sequence[tuple[str, int]]) -> None:
        """Count `items` (digest, size) as pending uploads of the repo, or raise `RepoQuotaExceeded` when
        they would take it past its limit. Items the repo already holds or has pending cost nothing."""
        if not self._limit or not items:
            return
        pending = tables.upload_reservations
        now = utcnow()
        with transaction(self._engine) as conn:
            known = set(
                conn.execute(
                    sa.select(pending.c.digest).where(
                        pending.c.repo_id == repo_id,
                        pending.c.kind == kind,
                        pending.c.digest.in_([digest for digest, _ in items]),
                        pending.c.created_at >= now - self._grace,
                    )
                ).scalars()
            )
            if kind == LFS:
                known |= set(
                    conn.execute(
                        sa.select(tables.repo_contents.c.sha256).where(
                            tables.repo_contents.c.repo_id == repo_id,
                            tables.repo_contents.c.sha256.in_([digest for digest, _ in items]),
                        )
                    ).scalars()
                )
            new = {digest: size for digest, size in items if digest not in known}
            usage = self._usage(conn, repo_id)
            adding = sum(new.values())
            if usage + adding > self._limit:
                raise _exceeded(repo_name, self._limit, usage, adding)
            # Expired reservations of this repo go now; their uploads are gc's to remove.
            conn.execute(
                sa.delete(pending).where(
                    pending.c.repo_id == repo_id, pending.c.created_at < now - self._grace
                )
            )
            for digest, size in new.items():
                conn.execute(
                    sa.delete(pending).where(
                        pending.c.repo_id == repo_id, pending.c.kind == kind, pending.c.digest == digest
                    )
                )
                conn.execute(
                    sa.insert(pending).values(
                        repo_id=repo_id, kind=kind, digest=digest, size=size, created_at=now
                    )
                )

    def settle(self, repo_id: int, placeholder: str, digest: str | None) -> None:
        """The pending upload reserved as `placeholder` (an upload session's, by size alone) is now the
        pending LFS object `digest`, which stops counting once a commit names it; None: it ends."""
        if not self._limit:
            return  # nothing was reserved
        pending = tables.upload_reservations
        mine = sa.and_(pending.c.repo_id == repo_id, pending.c.kind == LFS)
        with transaction(self._engine) as conn:
            if digest is not None:
                conn.execute(sa.delete(pending).where(mine, pending.c.digest == digest))
                conn.execute(
                    sa.update(pending).where(mine, pending.c.digest == placeholder).values(digest=digest)
                )
            else:
                conn.execute(sa.delete(pending).where(mine, pending.c.digest == placeholder))
