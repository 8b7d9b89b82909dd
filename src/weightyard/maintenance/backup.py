"""`weightyard backup DIR`: a consistent copy of a hub, safe to take while it serves.

The database is copied with SQLite's online backup API (one consistent snapshot, which never blocks the
hub's writers); the blobs and xorbs are copied after it, through the object store interface, into the layout
of a local data folder (each blob hashed on the way, so the copy is checked against its name). Every row in
the snapshot has its object stored by then (objects are stored inside their row's transaction, and
collection is the only thing that removes them: do not run `weightyard gc` during a backup), so the copy is
complete; objects stored after the snapshot come along as files without a row, which `weightyard gc`
removes from a restored hub. Content is immutable and named by its hash, so an object already in `DIR` with
the right size is not copied again: a second backup into the same folder copies only what is new.

`DIR` is a data folder: restoring is starting the hub on it (or copying it back), see docs/operations.md.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from weightyard.maintenance.startup import DATABASE_FILE
from weightyard.storage import BLOBS, XORBS, Namespace, ObjectStore, open_object_store

if TYPE_CHECKING:
    from weightyard.hub import Hub

_ADMIN_TOKEN = "admin-token"  # noqa: S105 - a file name
_COPY_PIECE = 8 * 1024 * 1024


class BackupError(Exception):
    """The backup cannot be made; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    target: str
    files_copied: int
    bytes_copied: int
    files_present: int


def backup(hub: Hub, target: Path) -> BackupReport:
    """Copy the hub's database, blobs and xorbs into `target` (see the module docstring).

    Example:
        >>> backup(hub, Path("/backups/weightyard-2026-12-05")).bytes_copied  # doctest: +SKIP
        5532108800
    """
    if hub.engine.dialect.name != "sqlite":
        raise BackupError("`weightyard backup` copies SQLite databases; back PostgreSQL up with pg_dump")
    target = target.resolve()
    if target == hub.settings.data.resolve():
        raise BackupError("the backup folder is the hub's own data folder")
    if target.exists() and any(target.iterdir()) and not (target / DATABASE_FILE).exists():
        raise BackupError(f"{target} is neither empty nor an earlier backup")
    target.mkdir(parents=True, exist_ok=True)
    _copy_database(hub, target / DATABASE_FILE)
    copied = present = size = 0
    # The copy is a data folder: its blobs and xorbs in the layout of a local store.
    destination = open_object_store((target / "blobs").as_uri(), target / "xorbs")
    source = hub.store.objects
    for namespace in (BLOBS, XORBS) if hub.store.xet else (BLOBS,):
        for item in source.list(namespace):
            if destination.size(namespace, item.key) == item.size:
                present += 1
                continue
            _copy_object(source, destination, namespace, item.key, item.size)
            copied += 1
            size += item.size
    token = hub.settings.data.resolve() / _ADMIN_TOKEN
    if token.is_file():
        _copy_file(token, target / _ADMIN_TOKEN)
        (target / _ADMIN_TOKEN).chmod(0o600)
    return BackupReport(str(target), copied, size, present)


def _copy_database(hub: Hub, destination: Path) -> None:
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}")
    raw = hub.engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        raw.close()
    for stale in destination.parent.glob(f"{destination.name}-*"):
        # The WAL and shared memory of a hub once started on this folder belong to the old file.
        stale.unlink()
    os.replace(partial, destination)


def _copy_object(
    source: ObjectStore, destination: ObjectStore, namespace: Namespace, key: str, size: int
) -> None:
    """Copy one object; a blob is hashed on the way, so the copy is checked against its name."""
    pieces = source.read(namespace, key, 0, size, _COPY_PIECE)
    if namespace == BLOBS:
        writer = destination.blob_writer(key)
        try:
            for piece in pieces:
                writer.write(piece)
            writer.seal(expected_sha256=key, expected_size=size)
            writer.publish()
        finally:
            writer.abort()
        return
    scratch = destination.scratch()
    try:
        for piece in pieces:
            scratch.write(piece)
        destination.put_xorb(key, scratch)
    finally:
        scratch.discard()


def _copy_file(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}")
    shutil.copyfile(source, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, destination)
