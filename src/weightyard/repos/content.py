"""Content by sha256 over the object store, and the indexes about those bytes.

The object store (`storage/`) keeps bytes by key; this module records what they are: a `blobs` row for every
content the hub received, and the Xet index (tables `xet_*`): each xorb's chunk table (the server's own
parse), where every chunk lies, each file's terms under its Xet hash and its checked sha256, and which user
may name which xorb. Everything else reaches content through `ContentStore`.

A sha256 is served from a whole blob when one is stored, else rebuilt from xorbs. A whole blob is either
uploaded or a bounded, evictable copy of content kept as xorbs, written for plain-HTTP downloads
(`repos/copies.py`; a `whole_copies` row tells the two apart). With `pack=True`
(`WEIGHTYARD_BLOB_URL=xet://…`) every regular or LFS upload is chunked and packed into xorbs too,
deduplicated against everything stored, so all uploads share one storage model.

An object is made visible before the write transaction that records its row, never inside it: on S3 that is
a network call (for a staged upload, a server-side copy of every part) which must not hold up every other
write in the hub. The transaction then checks that the object is still there, because `weightyard gc`
deletes objects under the same write lock and may have collected the same content in between; if it did,
the upload fails with a retryable `ContentCollected` and records nothing. A writer whose transaction fails
removes the object it created, under the write lock and only if no other writer of the same content
recorded it meanwhile; a `kill -9` in between leaves an object without a row, which `weightyard gc` removes
once it is older than the upload age (so objects of writers still on their way to their transaction are
spared).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import io
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

import sqlalchemy as sa

from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.errors import (
    BadRequest,
    BlobNotFound,
    ContentCollected,
    ContentMismatch,
    StoredContentDamaged,
    StoredContentMissing,
)
from weightyard.faults import crash_point
from weightyard.storage import (
    BLOBS,
    XORBS,
    BlobInfo,
    Namespace,
    ObjectStore,
    ObjectWriter,
    ScratchFile,
    StagedUpload,
    check_sha256,
    open_object_store,
)
from weightyard.xet import (
    READ_WINDOW,
    ChunkLocation,
    FilePacker,
    FileTerm,
    PackedXorb,
    ReadAhead,
    ShardFile,
    XorbInfo,
    hash_to_string,
    iter_file_bytes,
    pack_chunk_table,
    string_to_hash,
    unpack_chunk_table,
)
from weightyard.xet.reconstruction import checked_window, plan_reconstruction, window_groups
from weightyard.zero_copy import FileRange, SegmentStream, Window, close_when_done

_log = logging.getLogger(__name__)
_TERM = struct.Struct("<32sIII")
# Parsed chunk tables kept in memory (up to ~1.6 MB each for 8192 chunks): the xorbs of a file of several GB.
# Xorbs never change, so a cached table is true for as long as the xorb is stored.
_INFO_CACHE_SIZE = 128
# Reads of a complete upload that is packed into xorbs after the fact (a multipart upload).
_ADOPT_READ = 8 * 1024 * 1024
_QUERY_BATCH = 500
# Scratch files older than this are leftovers of dead writers; younger ones may belong to another process.
SCRATCH_AGE = 24 * 3600.0
# Plain-HTTP downloads rebuilt from xorbs read and re-hash their next windows on these threads while the
# event loop sends the current one (xet/reconstruction.py, `ReadAhead`): one core is left to the event loop,
# two windows ahead per download, four of `READ_WINDOW` bytes (32 MiB) at most in the whole process.
READ_AHEAD = ReadAhead(threads=max(1, (os.cpu_count() or 1) - 1), windows=4, depth=2)


def forget_copies(conn: sa.Connection, shas: Sequence[str]) -> None:
    """Inside a write transaction: these contents' whole blobs are no longer copies (repos/copies.py), and no
    pending job will record one (an upload placed the content, or the content goes)."""
    conn.execute(sa.delete(tables.whole_copies).where(tables.whole_copies.c.sha256.in_(shas)))
    conn.execute(sa.delete(tables.copy_jobs).where(tables.copy_jobs.c.sha256.in_(shas)))


def pack_terms(terms: Iterable[FileTerm]) -> bytes:
    """A file's terms as one blob for the database (44 bytes a term)."""
    return b"".join(_TERM.pack(t.xorb_hash, t.unpacked_len, t.chunk_start, t.chunk_end) for t in terms)


def unpack_terms(blob: bytes) -> tuple[FileTerm, ...]:
    return tuple(FileTerm(x, n, s, e) for x, n, s, e in _TERM.iter_unpack(blob))


@dataclass(frozen=True)
class XetFile:
    """A stored file: its Xet hash, the sha256 the server checked, its size and terms."""

    file_hash: bytes
    sha256: str
    size: int
    terms: tuple[FileTerm, ...]


class BlobWriter(Protocol):
    """Content being written. Bytes are hashed once, as they stream in; nothing is visible before `commit`."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        """Make the content visible under its sha256 and record it, after checking the expectations.

        Raises `ContentMismatch` (and discards the bytes) when an expectation does not hold.
        """
        ...

    def abort(self) -> None:
        """Discard everything written so far. Safe to call more than once, and after `commit`."""
        ...


def open_content_store(url: str, engine: sa.Engine, xorb_root: Path, *, xet: bool) -> ContentStore:
    """The hub's content over the object store named by `url`; `xet://PATH` packs every upload into xorbs
    (and needs Xet storage enabled)."""
    pack = urlparse(url).scheme == "xet"
    if pack and not xet:
        raise BadRequest("a xet:// blob store needs Xet storage (WEIGHTYARD_XET)")
    return ContentStore(open_object_store(url, xorb_root), engine, xet=xet, pack=pack)


# Every tree page reads this (built once: building a statement costs more than running it).
_XET_HASHES = (
    sa.select(tables.xet_files.c.sha256, sa.func.min(tables.xet_files.c.file_hash))
    .where(tables.xet_files.c.sha256.in_(sa.bindparam("hashes", expanding=True)))
    .group_by(tables.xet_files.c.sha256)
)


class ContentStore:
    """Content by sha256 over whole blobs and Xet xorbs, with the rows that index it (module docstring)."""

    def __init__(self, objects: ObjectStore, engine: sa.Engine, *, xet: bool = False, pack: bool = False):
        self.objects = objects
        self.xet = xet
        self.pack = pack
        self._engine = engine
        self._infos: OrderedDict[bytes, XorbInfo] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ whole content

    def writer(self, sha256: str | None = None) -> BlobWriter:
        """A writer for new content (`sha256`: what it should hash to, when the caller knows)."""
        if self.pack:
            return XetBlobWriter(self)
        return WholeBlobWriter(self, self.objects.blob_writer(sha256))

    def place(self, publish: Callable[[], bool], blob: BlobInfo) -> None:
        """Make `blob`'s bytes visible with `publish`, then record it (see the module docstring)."""
        created = publish()
        try:
            with transaction(self._engine) as conn:
                now = utcnow()
                row = {"sha256": blob.sha256, "size": blob.size, "created_at": now}
                if insert_ignore(conn, tables.blobs, [row]) == 0:
                    # Stored again: gc's age of unreferenced content counts from the latest upload.
                    conn.execute(
                        sa.update(tables.blobs)
                        .where(tables.blobs.c.sha256 == blob.sha256)
                        .values(created_at=now)
                    )
                # An uploaded whole blob is never a copy, even where a copy's object was there first.
                forget_copies(conn, [blob.sha256])
                self.still_stored(BLOBS, blob.sha256, blob.size)
                crash_point("blob.placed")
        except BaseException:
            if created:
                self._withdraw(BLOBS, blob.sha256, tables.blobs.c.sha256)
            raise

    def _withdraw(self, namespace: Namespace, key: str, column: sa.Column[str]) -> None:
        """Remove an object this writer created but could not record, unless another writer of the same
        content recorded it meanwhile: checked under the write lock, as gc deletes (a writer that has not
        committed yet then finds its object gone in `still_stored`). If even that fails (the database is
        down), the object stays without a row for `weightyard gc`."""
        try:
            with transaction(self._engine) as conn:
                if conn.execute(sa.select(column).where(column == key)).first() is None:
                    self.objects.delete(namespace, key)
        except Exception:
            _log.warning("could not remove %s %s after its row failed; gc will", namespace[:-1], key)

    def withdraw_blob(self, sha256: str) -> None:
        """Remove a whole blob this writer published but did not record, unless a row records the content."""
        self._withdraw(BLOBS, sha256, tables.blobs.c.sha256)

    def still_stored(self, namespace: Namespace, key: str, size: int) -> None:
        """Inside the write transaction that records an object published before it: raise `ContentCollected`
        (rolling the row back) if gc removed the object in between. Once this transaction commits, gc sees
        the row and spares the object."""
        if self.objects.size(namespace, key) != size:
            raise ContentCollected(
                f"{namespace[:-1]} {key} was removed by garbage collection while it was being stored; "
                "send it again",
                retry_after=1,
            )

    def upload(self, upload_id: str, sha256: str | None, size: int, part_size: int) -> StagedUpload:
        """The staged multipart upload `upload_id` (created on first use; see `ObjectStore.open_upload`)."""
        return self.objects.open_upload(upload_id, sha256, size, part_size)

    def adopt(self, upload: StagedUpload, blob: BlobInfo) -> None:
        """Make a staged upload whose digest the caller checked is `blob` the content; the upload is gone
        afterwards, whatever happens."""
        if not self.pack:
            self.place(lambda: upload.publish(blob), blob)
            return
        # Packing chunks the upload into xorbs: one read of its bytes, which are then no longer needed.
        writer = XetBlobWriter(self)
        try:
            for piece in upload.pieces(_ADOPT_READ):
                writer.write(piece)
            writer.commit(expected_sha256=blob.sha256, expected_size=blob.size)
        finally:
            upload.discard()

    def has_whole_blob(self, sha256: str) -> bool:
        return self.objects.size(BLOBS, sha256) is not None

    def presign(self, sha256: str, expires_in: int) -> str | None:
        """A URL that reads the whole blob `sha256` without the hub, or None: a store that cannot sign, or
        content kept only as xorbs (it is rebuilt by the hub)."""
        if not self.has_whole_blob(sha256):
            return None
        return self.objects.presign(BLOBS, sha256, expires_in)

    def presign_part(self, upload_id: str, number: int, expires_in: int) -> str | None:
        """A URL that takes part `number` of staged upload `upload_id` without the hub, or None."""
        return self.objects.presign_part(upload_id, number, expires_in)

    def presign_xorb(self, xorb_hash: bytes, expires_in: int) -> str | None:
        """A URL that reads the serialized xorb without the hub, or None when the store cannot sign."""
        return self.objects.presign(XORBS, hash_to_string(xorb_hash), expires_in)

    def exists(self, sha256: str) -> bool:
        return self.has_whole_blob(sha256) or self.file_by_sha256(sha256) is not None

    def size(self, sha256: str) -> int:
        size = self.objects.size(BLOBS, check_sha256(sha256))
        return size if size is not None else self._file_or_missing(sha256).size

    def open(self, sha256: str) -> BinaryIO:
        """A seekable binary stream of the content; raises `BlobNotFound` when absent."""
        if self.has_whole_blob(check_sha256(sha256)):
            return self.objects.open(BLOBS, sha256)
        return _ReconstructedFile(self, self._file_or_missing(sha256))  # type: ignore[return-value]

    def iter_range(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        """The bytes [start, end) of the content, in chunks of at most `chunk_size`."""
        if self.has_whole_blob(check_sha256(sha256)):
            return self._whole_or_rebuilt(sha256, start, end, chunk_size)
        return self._rebuilt(sha256, start, end, chunk_size)

    def _rebuilt(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        file = self._file_or_missing(sha256)
        return _resliced(self.iter_file(file.terms, start, min(end, file.size)), chunk_size)

    def _whole_or_rebuilt(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        # The object opens when the first byte is wanted: a whole copy evicted in between (repos/copies.py)
        # is rebuilt from its xorbs instead of failing a download whose headers are already sent.
        pieces = self.objects.read(BLOBS, sha256, start, end, chunk_size)
        try:
            first = next(pieces, None)
        except BlobNotFound:
            if self.file_by_sha256(sha256) is None:
                raise
            yield from self._rebuilt(sha256, start, end, chunk_size)
            return
        if first is not None:
            yield first
            yield from pieces

    @property
    def sends_files(self) -> bool:
        """Whether `segments` can hand out stored objects as local files to send."""
        return self.objects.local_files

    def segments(self, sha256: str, start: int, end: int) -> SegmentStream | None:
        """The bytes [start, end) of the content as segments a server sends itself (weightyard.zero_copy):
        a range of the whole blob's file, or the chunks of its xorbs' files, each window checked and re-hashed
        on a read-ahead thread ahead of the send (and holding its xorb file open until it is sent). None where
        objects are not local files (then stream them). The chunk tables are looked up here, in the request's
        thread, not while the stream is sent."""
        if not self.sends_files:
            return None
        if self.has_whole_blob(check_sha256(sha256)):
            try:
                handle = self.objects.open_file(BLOBS, sha256)
            except BlobNotFound:
                if self.file_by_sha256(sha256) is None:
                    raise
                handle = None  # a whole copy evicted meanwhile: the xorbs serve it
            else:
                if handle is None:
                    return None
                return _file_range(handle, start, end)
        file = self._file_or_missing(sha256)
        plan = plan_reconstruction(file.terms, self.xorb_info, start, min(end, file.size))
        jobs = (
            functools.partial(checked_window, self._xorb_opener(stored.hash), stored, chunks)
            for stored, chunks, _ in window_groups(plan)
        )
        windows = READ_AHEAD.ordered(jobs)
        return SegmentStream(
            windows,
            plan.end - plan.start,
            functools.partial(windows.close, close_when_done),
            plan.offset_into_first_range,
        )

    def _xorb_opener(self, xorb_hash: bytes) -> Callable[[], io.FileIO]:
        name = hash_to_string(xorb_hash)

        def opened() -> io.FileIO:
            handle = self.objects.open_file(XORBS, name)
            if handle is None:
                raise StoredContentMissing(f"xorb {name} is not a local file")
            return handle

        return opened

    def delete(self, sha256: str) -> None:
        """Forget the content under this sha256 (with its whole copy); its xorbs go when `weightyard gc` finds
        them unreferenced."""
        self.objects.delete(BLOBS, check_sha256(sha256))
        with transaction(self._engine) as conn:
            forget_copies(conn, [sha256])
            if not self.xet:
                return
            hashes = list(
                conn.execute(
                    sa.select(tables.xet_files.c.file_hash).where(tables.xet_files.c.sha256 == sha256)
                ).scalars()
            )
            conn.execute(
                sa.delete(tables.xet_file_xorbs).where(tables.xet_file_xorbs.c.file_hash.in_(hashes))
            )
            conn.execute(sa.delete(tables.xet_files).where(tables.xet_files.c.sha256 == sha256))

    def check_stored(self, sha256: str, size: int) -> None:
        """Raise `StoredContentMissing` or `StoredContentDamaged` unless all `size` bytes are stored (checked
        before a download sends its headers)."""
        actual = self.objects.size(BLOBS, check_sha256(sha256))
        if actual is not None:
            if actual != size:
                raise StoredContentDamaged(
                    f"blob {sha256} has {actual} bytes in storage, not the {size} recorded"
                )
            return
        file = self.file_by_sha256(sha256)
        if file is None:
            raise StoredContentMissing(f"blob {sha256} is missing from storage")
        for xorb in sorted({term.xorb_hash for term in file.terms}):
            self.check_xorb(xorb, f" (part of blob {sha256})")

    def sweep_scratch(self, older_than: float = SCRATCH_AGE) -> int:
        """Remove scratch files of writers that died mid-upload; returns how many were removed."""
        cutoff = time.time() - older_than
        old = [item.key for item in self.objects.list_scratch() if item.mtime < cutoff]
        for key in old:
            self.objects.delete_scratch(key)
        return len(old)

    def _file_or_missing(self, sha256: str) -> XetFile:
        file = self.file_by_sha256(sha256)
        if file is None:
            raise BlobNotFound(f"blob {sha256} is not stored")
        return file

    # ------------------------------------------------------------------ xorbs

    def has_xorb(self, xorb_hash: bytes) -> bool:
        return self.xorb_info(xorb_hash) is not None

    def xorb_info(self, xorb_hash: bytes) -> XorbInfo | None:
        """The server's chunk table of a stored xorb (cached: xorbs never change), or None."""
        with self._lock:
            cached = self._infos.get(xorb_hash)
            if cached is not None:
                self._infos.move_to_end(xorb_hash)
                return cached
        with self._engine.connect() as conn:
            blob = conn.execute(
                sa.select(tables.xet_xorbs.c.chunk_table).where(
                    tables.xet_xorbs.c.hash == hash_to_string(xorb_hash)
                )
            ).scalar()
        if blob is None:
            return None
        info = unpack_chunk_table(xorb_hash, bytes(blob))
        self._remember_info(info)
        return info

    def _remember_info(self, info: XorbInfo) -> None:
        with self._lock:
            self._infos[info.hash] = info
            self._infos.move_to_end(info.hash)
            if len(self._infos) > _INFO_CACHE_SIZE:
                self._infos.popitem(last=False)

    def xorb_size(self, xorb_hash: bytes) -> int | None:
        """The stored length of a xorb's object, None when it is not stored."""
        return self.objects.size(XORBS, hash_to_string(xorb_hash))

    def check_xorb(self, xorb_hash: bytes, context: str = "") -> None:
        """Raise unless the xorb's object is stored with the length its row records."""
        name = hash_to_string(xorb_hash)
        info = self.xorb_info(xorb_hash)
        actual = self.objects.size(XORBS, name)
        if info is None or actual is None:
            raise StoredContentMissing(f"xorb {name}{context} is missing from storage")
        if actual != info.serialized_len:
            raise StoredContentDamaged(
                f"xorb {name}{context} has {actual} bytes in storage, not the {info.serialized_len} recorded"
            )

    def read_xorb(self, xorb_hash: bytes, start: int, buffers: Sequence[memoryview]) -> int:
        """Fill `buffers` with serialized bytes of a stored xorb from `start` on (`XorbReader`)."""
        return self.objects.read_into(XORBS, hash_to_string(xorb_hash), start, buffers)

    def iter_xorb(self, xorb_hash: bytes, start: int, end: int, piece_size: int) -> Iterator[memoryview]:
        """Serialized bytes `[start, end)` of a stored xorb as it is kept, in pieces of up to `piece_size`."""
        return self.objects.read(XORBS, hash_to_string(xorb_hash), start, end, piece_size)

    def xorb_segments(self, xorb_hash: bytes, start: int, end: int) -> SegmentStream | None:
        """Serialized bytes `[start, end)` of a stored xorb as a file range the server sends itself
        (weightyard.zero_copy, `sendfile`): nothing of it is read or mapped into the process. None where
        objects are not local files (then `iter_xorb`)."""
        if not self.sends_files:
            return None
        handle = self.objects.open_file(XORBS, hash_to_string(xorb_hash))
        return None if handle is None else _file_range(handle, start, end)

    def scratch(self) -> ScratchFile:
        """A scratch file for a xorb body that is validated while it arrives (see `add_xorb`)."""
        return self.objects.scratch()

    def add_xorb(self, body: ScratchFile | bytes, info: XorbInfo, user_id: int | None) -> bool:
        """Store a validated xorb (taking a scratch file over); False when it was known.

        Either way the uploader is granted use of it and its grace period for garbage collection restarts.
        "Known" means known to this uploader: that someone else stored the same xorb is not revealed.
        The bytes are stored before the write transaction that records them (see the module docstring).
        """
        name = hash_to_string(info.hash)
        now = utcnow()
        created = False
        try:
            if self.objects.size(XORBS, name) != info.serialized_len:
                created = self.objects.put_xorb(name, body)
        finally:
            if not isinstance(body, bytes):
                body.discard()
        try:
            known = self._record_xorb(info, name, user_id, now)
        except BaseException:
            if created:
                self._withdraw(XORBS, name, tables.xet_xorbs.c.hash)
            raise
        self._remember_info(info)  # the shard that follows checks its files against this table
        return not known

    def _record_xorb(self, info: XorbInfo, name: str, user_id: int | None, now: datetime.datetime) -> bool:
        """Record a stored xorb and the uploader's grant; True when the uploader knew it already."""
        with transaction(self._engine) as conn:
            row = {
                "hash": name,
                "wire_len": info.serialized_len,
                "raw_len": info.raw_len,
                "n_chunks": len(info.chunks),
                "chunk_table": pack_chunk_table(info),
                "created_at": now,
                "last_used_at": now,
            }
            # The constraints decide, not a look before inserting: a new row means a new xorb, and a new
            # grant on a stored xorb means that this uploader did not know it.
            new = insert_ignore(conn, tables.xet_xorbs, [row]) == 1
            if new:
                insert_ignore(
                    conn,
                    tables.xet_chunks,
                    [
                        {"chunk_hash": hash_to_string(c.hash), "xorb_hash": name, "chunk_index": i}
                        for i, c in enumerate(info.chunks)
                    ],
                )
            else:
                self.touch_xorbs(conn, [info.hash])
            granted = user_id is not None and (
                insert_ignore(
                    conn,
                    tables.xet_xorb_grants,
                    [{"xorb_hash": name, "user_id": user_id, "created_at": now}],
                )
                == 1
            )
            self.still_stored(XORBS, name, info.serialized_len)
            crash_point("xorb.placed")
        return not new and (user_id is None or not granted)

    def delete_xorb_object(self, name: str) -> None:
        """Remove a xorb's bytes (gc, after its rows went in the caller's write transaction)."""
        self.objects.delete(XORBS, name)

    def grant_xorbs(self, conn: sa.Connection, xorbs: Iterable[bytes], user_id: int) -> None:
        """Let `user_id` name these stored xorbs in its shards from now on."""
        now = utcnow()
        rows: list[dict[str, object]] = [
            {"xorb_hash": name, "user_id": user_id, "created_at": now}
            for name in sorted({hash_to_string(x) for x in xorbs})
        ]
        insert_ignore(conn, tables.xet_xorb_grants, rows)

    def touch_xorbs(self, conn: sa.Connection, xorbs: Iterable[bytes]) -> None:
        names = sorted({hash_to_string(x) for x in xorbs})
        if names:
            conn.execute(
                sa.update(tables.xet_xorbs)
                .where(tables.xet_xorbs.c.hash.in_(names))
                .values(last_used_at=utcnow())
            )

    def locate_chunk(self, chunk: bytes) -> ChunkLocation | None:
        """Where a chunk is stored (the `ChunkIndex` of server-side packing and of dedup queries)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(tables.xet_chunks.c.xorb_hash, tables.xet_chunks.c.chunk_index).where(
                    tables.xet_chunks.c.chunk_hash == hash_to_string(chunk)
                )
            ).first()
        return None if row is None else ChunkLocation(string_to_hash(row.xorb_hash), int(row.chunk_index))

    # ------------------------------------------------------------------ files

    def unused_upload_bytes(self, user_id: int, xorbs: Iterable[bytes]) -> int:
        """Wire bytes of those `xorbs` that `user_id` uploaded and that no registered file uses yet: what the
        uploader sent for the shard that will name them."""
        names = sorted({hash_to_string(x) for x in xorbs})
        xx, grants, used = tables.xet_xorbs, tables.xet_xorb_grants, tables.xet_file_xorbs
        total = 0
        with self._engine.connect() as conn:
            for start in range(0, len(names), _QUERY_BATCH):
                query = (
                    sa.select(sa.func.coalesce(sa.func.sum(xx.c.wire_len), 0))
                    .join(grants, sa.and_(grants.c.xorb_hash == xx.c.hash, grants.c.user_id == user_id))
                    .where(
                        xx.c.hash.in_(names[start : start + _QUERY_BATCH]),
                        ~sa.exists().where(used.c.xorb_hash == xx.c.hash),
                    )
                )
                total += int(conn.execute(query).scalar_one())
        return total

    def file(self, file_hash: bytes) -> XetFile | None:
        return self._file_where(tables.xet_files.c.file_hash == hash_to_string(file_hash))

    def file_by_sha256(self, sha256: str) -> XetFile | None:
        if not self.xet:
            return None
        return self._file_where(tables.xet_files.c.sha256 == sha256)

    def xet_hashes(self, shas: Iterable[str]) -> dict[str, str]:
        """The Xet hash of each of `shas` stored as xorbs, in one query; content registered under several Xet
        hashes answers with the smallest, always the same."""
        wanted = sorted(set(shas))
        if not self.xet or not wanted:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(_XET_HASHES, {"hashes": wanted}).all()
        return {sha: str(file_hash) for sha, file_hash in rows}

    def _file_where(self, condition: sa.ColumnElement[bool]) -> XetFile | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(tables.xet_files).where(condition).limit(1)).first()
        if row is None:
            return None
        return XetFile(
            string_to_hash(row.file_hash), row.sha256, int(row.size), unpack_terms(bytes(row.terms))
        )

    def register_file(self, conn: sa.Connection, entry: ShardFile, sha256: str) -> None:
        """Record a verified file (its sha256 checked by the caller) in the caller's transaction."""
        name = hash_to_string(entry.file_hash)
        row = {
            "file_hash": name,
            "sha256": sha256,
            "size": entry.size,
            "terms": pack_terms(entry.terms),
            "created_at": utcnow(),
        }
        insert_ignore(conn, tables.xet_files, [row])
        xorbs = sorted({hash_to_string(t.xorb_hash) for t in entry.terms})
        insert_ignore(conn, tables.xet_file_xorbs, [{"file_hash": name, "xorb_hash": x} for x in xorbs])

    def iter_file(
        self, terms: tuple[FileTerm, ...], start: int = 0, end: int | None = None
    ) -> Iterator[memoryview]:
        """Bytes `[start, end)` of the file made of `terms`, every chunk re-hashed on the way: a stream, whose
        next windows the read-ahead threads prepare while the caller uses the current one."""
        if not terms:
            return iter(())
        return iter_file_bytes(terms, self.xorb_info, self.read_xorb, start, end, ahead=READ_AHEAD)

    def file_bytes(self, terms: tuple[FileTerm, ...], start: int, end: int) -> bytes:
        """Bytes `[start, end)` of the file made of `terms`, every chunk re-hashed: one read (a scanner's),
        with nothing read ahead of it nor kept after it."""
        if not terms:
            return b""
        return b"".join(iter_file_bytes(terms, self.xorb_info, self.read_xorb, start, end))

    def sha256_of(self, terms: tuple[FileTerm, ...]) -> str:
        """The sha256 of a file rebuilt from its terms: what a shard's claim is checked against.

        Chunk hashes are not recomputed: each was when its xorb arrived, and a byte changed in storage since
        then changes this sha256 too, so a false claim fails either way.
        """
        digest = hashlib.sha256()
        if terms:
            for piece in self.file_pieces(terms, bytearray(READ_WINDOW)):
                digest.update(piece)
        return digest.hexdigest()

    def file_pieces(self, terms: tuple[FileTerm, ...], window: bytearray) -> Iterator[memoryview]:
        """The bytes of the file made of `terms` for a caller that hashes every byte itself (see `sha256_of`):
        chunks not re-hashed, each piece a view into `window` (`READ_WINDOW` bytes) valid until the next."""
        return iter_file_bytes(terms, self.xorb_info, self.read_xorb, rehash=False, reuse=window)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with transaction(self._engine) as conn:
            yield conn


class WholeBlobWriter:
    """A `BlobWriter` that stores the content as one blob object."""

    def __init__(self, content: ContentStore, writer: ObjectWriter) -> None:
        self._content = content
        self._writer = writer

    @property
    def size(self) -> int:
        return self._writer.size

    def write(self, data: bytes | memoryview) -> None:
        self._writer.write(data)

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        blob = self._writer.seal(expected_sha256, expected_size)
        try:
            self._content.place(self._writer.publish, blob)
        finally:
            self._writer.abort()
        return blob

    def abort(self) -> None:
        self._writer.abort()


class XetBlobWriter:
    """Chunks, dedups and packs arriving bytes into xorbs while hashing them with sha256.

    Completed xorbs are stored as soon as they fill up (memory holds one open xorb); `commit` stores the last
    one and records the file under its sha256. Xorbs of an aborted upload stay unreferenced until `gc`.
    """

    def __init__(self, content: ContentStore) -> None:
        self._content = content
        self._packer = FilePacker(content.locate_chunk)
        self._hash = hashlib.sha256()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self._hash.update(data)
        self._size += len(data)
        self._store_xorbs(self._packer.update(data))

    def _store_xorbs(self, xorbs: list[PackedXorb]) -> None:
        for packed in xorbs:
            self._content.add_xorb(packed.body, packed.info, None)

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        sha256 = self._hash.hexdigest()
        if expected_size is not None and expected_size != self._size:
            raise ContentMismatch(f"expected {expected_size} bytes, received {self._size}")
        if expected_sha256 is not None and expected_sha256 != sha256:
            raise ContentMismatch(f"content sha256 is {sha256}, not the announced {expected_sha256}")
        last, entry = self._packer.finish(bytes.fromhex(sha256))
        self._store_xorbs(last)
        with self._content.connect() as conn:
            self._content.register_file(conn, entry, sha256)
        return BlobInfo(sha256=sha256, size=self._size)

    def abort(self) -> None:
        """Nothing to discard: stored xorbs are content-addressed and wait for `gc` like any unused one."""


def _resliced(pieces: Iterator[memoryview], size: int) -> Iterator[memoryview]:
    for piece in pieces:
        for offset in range(0, len(piece), size):
            yield piece[offset : offset + size]


class _ReconstructedFile:
    """A read-only, seekable view of a file rebuilt from xorbs (what `ContentStore.open` promises)."""

    def __init__(self, content: ContentStore, file: XetFile) -> None:
        self._content = content
        self._file = file
        self._position = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        end = self._file.size if size < 0 else min(self._file.size, self._position + size)
        if end <= self._position:
            return b""
        data = self._content.file_bytes(self._file.terms, self._position, end)
        self._position = end
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._file.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> _ReconstructedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_range(handle: io.FileIO, start: int, end: int) -> SegmentStream:
    """Bytes `[start, end)` of an open stored file (fewer if it is shorter) as one file range the server sends
    itself; the stream closes the file."""
    try:
        count = max(0, min(end, os.fstat(handle.fileno()).st_size) - start)
    except BaseException:
        handle.close()
        raise
    return SegmentStream(iter([Window([FileRange(handle.fileno(), start, count)])]), count, handle.close)
