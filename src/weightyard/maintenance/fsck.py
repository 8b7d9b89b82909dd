"""`weightyard fsck`: the database's references against the stored blobs and xorbs, and what can be repaired.

Problems, each with a stable `kind`:

* `content-missing`: a branch, tag or pull request head names content the database has no record of;
* `blob-missing`, `blob-truncated`, `blob-corrupt` (`--hash`): a recorded whole blob is not stored, has
  another length, or other bytes;
* `xorb-missing`, `xorb-truncated`, `xorb-corrupt` (`--hash`): the same for a recorded xorb;
* `file-without-row`: a blob or xorb file the database does not know (left by a killed process);
* `unattested-commit`: a commit without the hub's attestation (`weightyard pull` refuses it);
* `stale-upload`: an unfinished upload older than a day (see `weightyard gc`).

`repair` fixes the last three, removes records of lost content no commit references, and drops damaged
whole copies of content kept as xorbs (repos/copies.py: the xorbs serve it again, and a later download
writes a new copy); lost content that a commit references cannot be repaired here: restore it from a backup
(docs/operations.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from weightyard.db import tables, transaction
from weightyard.maintenance.storage import (
    DEFAULT_UPLOAD_AGE,
    orphans,
    remove_uploads,
    stale_uploads,
)
from weightyard.storage import BLOBS, XORBS, Namespace, ObjectStore
from weightyard.xet import XetError, XorbParser, string_to_hash

if TYPE_CHECKING:
    from weightyard.hub import Hub

_READ = 4 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    message: str
    repairable: bool
    repaired: bool = False


@dataclass(frozen=True)
class FsckReport:
    problems: tuple[Problem, ...]
    blobs: int
    xorbs: int
    commits: int

    @property
    def unresolved(self) -> tuple[Problem, ...]:
        """Problems still there: all of them after a check; after a repair, those it could not fix."""
        return tuple(problem for problem in self.problems if not problem.repaired)


def check(hub: Hub, rehash: bool = False, repair: bool = False) -> FsckReport:
    """Check the hub's storage against its database (see the module docstring); with `repair`, fix what can
    be fixed and mark it `repaired`.

    Example:
        >>> [p.kind for p in check(hub).problems]  # doctest: +SKIP
        ['blob-truncated', 'unattested-commit']
    """
    referenced, _ = hub.repos.referenced_content()
    blob_problems, blobs = _check_blobs(hub, referenced, rehash)
    xorb_problems, xorbs = _check_xorbs(hub, rehash) if hub.store.xet else ([], 0)
    if repair:
        repairable = [p for p in blob_problems if p.repairable]
        _forget_lost_unreferenced(hub, [p for p in repairable if p.kind == "blob-missing"])
        hub.repos.copies.drop([p.subject for p in repairable if p.kind != "blob-missing"])
    problems = [_done(p, repair and p.repairable) for p in blob_problems + xorb_problems]
    with hub.engine.connect() as conn:
        recorded = set(conn.execute(sa.select(tables.blobs.c.sha256)).scalars())
        commits = int(conn.execute(sa.select(sa.func.count()).select_from(tables.commits)).scalar_one())
    # Heads only: older commits still name LFS content deleted for good on purpose (`delete_lfs_files`).
    in_heads, _ = hub.repos.referenced_content(heads_only=True)
    problems += [
        Problem(
            "content-missing",
            sha,
            f"content {sha} named by a branch, tag or pull request has no record",
            False,
        )
        for sha in sorted(in_heads - recorded)
    ]
    unattested = hub.provenance.unattested()
    if repair:
        hub.provenance.repair_attestations()
    problems += [
        _done(
            Problem(
                "unattested-commit",
                f"{repo.repo_id}@{commit.oid}",
                f"commit {commit.oid} of {repo.repo_id} has no hub attestation",
                True,
            ),
            repair,
        )
        for repo, commit in unattested
    ]
    problems += [
        _done(
            Problem("file-without-row", item.name, f"{item.kind} {item.name} has no database row", True),
            repair,
        )
        for item in orphans(hub.engine, hub.store, remove=repair)
    ]
    uploads = stale_uploads(hub.engine, hub.store, DEFAULT_UPLOAD_AGE)
    if repair:
        remove_uploads(hub.engine, hub.store, uploads)
    problems += [
        _done(
            Problem(
                "stale-upload", item.name, f"abandoned {item.kind} {item.name} ({item.size} bytes)", True
            ),
            repair,
        )
        for item in uploads
    ]
    return FsckReport(tuple(problems), blobs, xorbs, commits)


def _done(problem: Problem, repaired: bool) -> Problem:
    return Problem(problem.kind, problem.subject, problem.message, problem.repairable, repaired)


def _check_blobs(hub: Hub, referenced: set[str], rehash: bool) -> tuple[list[Problem], int]:
    objects = hub.store.objects
    with hub.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.blobs.c.sha256, tables.blobs.c.size)).all()
        in_xorbs = set(conn.execute(sa.select(tables.xet_files.c.sha256)).scalars())
        copies = set(conn.execute(sa.select(tables.whole_copies.c.sha256)).scalars())
    problems = []
    for row in rows:
        sha, size = str(row.sha256), int(row.size)
        actual = objects.size(BLOBS, sha)
        if actual is None:
            if sha not in in_xorbs:
                used = sha in referenced
                problems.append(
                    Problem(
                        "blob-missing",
                        sha,
                        f"blob {sha} ({size} bytes) is missing from storage"
                        + ("" if used else "; no commit names it, so its record can go"),
                        not used,
                    )
                )
            continue
        # A damaged whole copy is dropped by a repair: its content is whole in its xorbs.
        copy = sha in copies and sha in in_xorbs
        note = "; it is a whole copy of content kept as xorbs, so it can go" if copy else ""
        if actual != size:
            message = f"blob {sha} has {actual} bytes, not the {size} recorded{note}"
            problems.append(Problem("blob-truncated", sha, message, copy))
        elif rehash and _sha256(objects, BLOBS, sha, size) != sha:
            problems.append(Problem("blob-corrupt", sha, f"blob {sha} does not hash to its name{note}", copy))
    return problems, len(rows)


def _sha256(objects: ObjectStore, namespace: Namespace, key: str, size: int) -> str:
    digest = hashlib.sha256()
    for piece in objects.read(namespace, key, 0, size, _READ):
        digest.update(piece)
    return digest.hexdigest()


def _check_xorbs(hub: Hub, rehash: bool) -> tuple[list[Problem], int]:
    objects = hub.store.objects
    with hub.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.xet_xorbs.c.hash, tables.xet_xorbs.c.wire_len)).all()
    problems = []
    for row in rows:
        name, size = str(row.hash), int(row.wire_len)
        actual = objects.size(XORBS, name)
        if actual is None:
            problems.append(
                Problem("xorb-missing", name, f"xorb {name} ({size} bytes) is missing from storage", False)
            )
            continue
        if actual != size:
            problems.append(
                Problem(
                    "xorb-truncated", name, f"xorb {name} has {actual} bytes, not the {size} recorded", False
                )
            )
        elif rehash and not _xorb_intact(objects, name, size):
            problems.append(Problem("xorb-corrupt", name, f"xorb {name} does not hash to its name", False))
    return problems, len(rows)


def _xorb_intact(objects: ObjectStore, name: str, size: int) -> bool:
    parser = XorbParser()
    try:
        for piece in objects.read(XORBS, name, 0, size, _READ):
            parser.feed(bytes(piece))
        parser.finish(string_to_hash(name))
    except XetError:
        return False
    return True


def _forget_lost_unreferenced(hub: Hub, lost: list[Problem]) -> None:
    """Drop the records of blobs that are gone and that no commit names (their grants go with them)."""
    shas = [problem.subject for problem in lost]
    if not shas:
        return
    with transaction(hub.engine) as conn:
        conn.execute(sa.delete(tables.blob_grants).where(tables.blob_grants.c.sha256.in_(shas)))
        conn.execute(sa.delete(tables.blobs).where(tables.blobs.c.sha256.in_(shas)))
