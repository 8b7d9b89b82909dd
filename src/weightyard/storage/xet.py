"""Chunk-level storage: files kept as Xet xorbs, read and written through the one `BlobStore` interface.

Objects: `ROOT/ab/<xorb hash>` holds a xorb body exactly as a client uploads it (no footer), so fetch URLs
serve byte ranges of it directly. Index (tables `xet_*`): each xorb's chunk table (the server's own parse),
where every chunk lies, and each file's terms under its Xet hash and its checked sha256.

`XetBlobStore` wraps a `LocalBlobStore`: a sha256 is served from a whole blob when one exists, else rebuilt
from xorbs. With `pack=True` (`WEIGHTYARD_BLOB_URL=xet://…`) every regular or LFS upload is chunked and packed
into xorbs too, deduplicated against everything stored, so all uploads share one storage model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.errors import BlobNotFound, ContentMismatch, StoredContentDamaged, StoredContentMissing
from weightyard.faults import crash_point
from weightyard.storage.base import BlobInfo
from weightyard.storage.local import LocalBlobStore, LocalBlobWriter, mapped_pieces
from weightyard.xet import (
    READ_WINDOW,
    ChunkLocation,
    FilePacker,
    FileTerm,
    PackedXorb,
    ShardFile,
    XorbInfo,
    hash_to_string,
    iter_file_bytes,
    pack_chunk_table,
    string_to_hash,
    unpack_chunk_table,
)

_TERM = struct.Struct("<32sIII")
# Buffers one `os.preadv` call takes at most (IOV_MAX on Linux).
_IOV_MAX = 1024
# Parsed chunk tables kept in memory (up to ~1.6 MB each for 8192 chunks): the xorbs of a file of several GB.
_INFO_CACHE_SIZE = 128
# Reads of a complete file that is packed into xorbs after the fact (a multipart upload).
_ADOPT_READ = 8 * 1024 * 1024


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


_QUERY_BATCH = 500


class XetBlobStore:
    """Blobs by sha256 over whole-blob files and Xet xorbs; see the module docstring."""

    def __init__(self, base: LocalBlobStore, xorb_root: Path, engine: sa.Engine, *, pack: bool) -> None:
        self.base = base
        self.xorb_root = xorb_root
        self.pack = pack
        self._engine = engine
        self._infos: OrderedDict[bytes, XorbInfo] = OrderedDict()
        self._lock = threading.Lock()
        xorb_root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ BlobStore

    @property
    def tmp_dir(self) -> Path:
        return self.base.tmp_dir

    def sweep_temporary(self, older_than: float | None = None) -> int:
        return self.base.sweep_temporary() if older_than is None else self.base.sweep_temporary(older_than)

    def writer(self) -> XetBlobWriter | LocalBlobWriter:
        return XetBlobWriter(self) if self.pack else self.base.writer()

    def adopt(self, written: Path, blob: BlobInfo) -> None:
        if not self.pack:
            self.base.adopt(written, blob)
            return
        # Packing chunks the file into xorbs: one read of the file, which is then no longer needed.
        writer = XetBlobWriter(self)
        try:
            with open(written, "rb") as handle:
                while data := handle.read(_ADOPT_READ):
                    writer.write(data)
            writer.commit(expected_sha256=blob.sha256, expected_size=blob.size)
        except BaseException:
            writer.abort()
            raise
        finally:
            written.unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        return self.base.exists(sha256) or self.file_by_sha256(sha256) is not None

    def size(self, sha256: str) -> int:
        if self.base.exists(sha256):
            return self.base.size(sha256)
        return self._file_or_missing(sha256).size

    def open(self, sha256: str) -> BinaryIO:
        if self.base.exists(sha256):
            return self.base.open(sha256)
        file = self._file_or_missing(sha256)
        return _ReconstructedFile(self, file)  # type: ignore[return-value]

    def iter_range(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        if self.base.exists(sha256):
            return self.base.iter_range(sha256, start, end, chunk_size)
        file = self._file_or_missing(sha256)
        return _resliced(self.iter_file(file.terms, start, min(end, file.size)), chunk_size)

    def delete(self, sha256: str) -> None:
        """Forget the content under this sha256; its xorbs go when `weightyard gc` finds them unreferenced."""
        self.base.delete(sha256)
        with transaction(self._engine) as conn:
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
        if self.base.exists(sha256):
            self.base.check_stored(sha256, size)
            return
        file = self.file_by_sha256(sha256)
        if file is None:
            raise StoredContentMissing(f"blob {sha256} is missing from storage")
        for xorb in sorted({term.xorb_hash for term in file.terms}):
            self.check_xorb(xorb, f" (part of blob {sha256})")

    def check_xorb(self, xorb_hash: bytes, context: str = "") -> None:
        """Raise unless the xorb's file is in place with the length its row records."""
        name = hash_to_string(xorb_hash)
        info = self.xorb_info(xorb_hash)
        try:
            actual = self.xorb_path(xorb_hash).stat().st_size
        except FileNotFoundError:
            actual = None
        if info is None or actual is None:
            raise StoredContentMissing(f"xorb {name}{context} is missing from storage")
        if actual != info.serialized_len:
            raise StoredContentDamaged(
                f"xorb {name}{context} has {actual} bytes in storage, not the {info.serialized_len} recorded"
            )

    def _file_or_missing(self, sha256: str) -> XetFile:
        file = self.file_by_sha256(sha256)
        if file is None:
            raise BlobNotFound(f"blob {sha256} is not stored")
        return file

    # ------------------------------------------------------------------ xorbs

    def xorb_path(self, xorb_hash: bytes) -> Path:
        name = hash_to_string(xorb_hash)
        return self.xorb_root / name[:2] / name

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
        with self._lock:
            self._infos[xorb_hash] = info
            if len(self._infos) > _INFO_CACHE_SIZE:
                self._infos.popitem(last=False)
        return info

    def read_xorb(self, xorb_hash: bytes, start: int, buffers: Sequence[memoryview]) -> int:
        """Fill `buffers` with serialized bytes of a stored xorb from `start` on (`XorbReader`).

        Scatter reads copy each byte once, from the page cache into place."""
        fd = os.open(self.xorb_path(xorb_hash), os.O_RDONLY)
        try:
            return _scatter_read(fd, start, buffers)
        finally:
            os.close(fd)

    def iter_xorb(self, xorb_hash: bytes, start: int, end: int, piece_size: int) -> Iterator[memoryview]:
        """Serialized bytes `[start, end)` of a stored xorb as it is kept, in pieces of up to `piece_size`."""
        yield from mapped_pieces(io.FileIO(self.xorb_path(xorb_hash), "rb"), start, end, piece_size)

    def temporary_xorb(self) -> Path:
        return self.base.tmp_dir / f"xorb-{uuid.uuid4().hex}"

    def add_xorb(self, body: Path | bytes, info: XorbInfo, user_id: int | None) -> bool:
        """Store a validated xorb (moving `body` into place when it is a file); False when it was known.

        Either way the uploader is granted use of it and its grace period for garbage collection restarts.
        "Known" means known to this uploader: that someone else stored the same xorb is not revealed.
        """
        name = hash_to_string(info.hash)
        final = self.xorb_path(info.hash)
        now = utcnow()
        placed = False
        try:
            with transaction(self._engine) as conn:
                exists = conn.execute(
                    sa.select(tables.xet_xorbs.c.hash).where(tables.xet_xorbs.c.hash == name)
                ).first()
                known = exists is not None and (user_id is None or self._granted(conn, name, user_id))
                if exists is None or not final.is_file():
                    self._place_xorb(body, final)
                    placed = True
                if exists is None:
                    conn.execute(
                        sa.insert(tables.xet_xorbs).values(
                            hash=name,
                            wire_len=info.serialized_len,
                            raw_len=info.raw_len,
                            n_chunks=len(info.chunks),
                            chunk_table=pack_chunk_table(info),
                            created_at=now,
                            last_used_at=now,
                        )
                    )
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
                if user_id is not None:
                    insert_ignore(
                        conn,
                        tables.xet_xorb_grants,
                        [{"xorb_hash": name, "user_id": user_id, "created_at": now}],
                    )
                crash_point("xorb.placed")
        except BaseException:
            # The file moves into place inside the transaction that records its row (so `gc`, holding the
            # same write lock, never mistakes it for an orphan); if that transaction fails, it moves out.
            if placed:
                final.unlink(missing_ok=True)
            raise
        if isinstance(body, Path):
            body.unlink(missing_ok=True)
        return not known

    def _place_xorb(self, body: Path | bytes, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, Path):
            os.replace(body, final)
            return
        tmp = self.temporary_xorb()
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)

    def grant_xorbs(self, conn: sa.Connection, xorbs: Iterable[bytes], user_id: int) -> None:
        """Let `user_id` name these stored xorbs in its shards from now on."""
        now = utcnow()
        rows: list[dict[str, object]] = [
            {"xorb_hash": name, "user_id": user_id, "created_at": now}
            for name in sorted({hash_to_string(x) for x in xorbs})
        ]
        insert_ignore(conn, tables.xet_xorb_grants, rows)

    @staticmethod
    def _granted(conn: sa.Connection, xorb: str, user_id: int) -> bool:
        grants = tables.xet_xorb_grants
        query = sa.select(grants.c.user_id).where(grants.c.xorb_hash == xorb, grants.c.user_id == user_id)
        return conn.execute(query).first() is not None

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
        return self._file_where(tables.xet_files.c.sha256 == sha256)

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
        if conn.execute(
            sa.select(tables.xet_files.c.sha256).where(tables.xet_files.c.file_hash == name)
        ).first():
            return
        conn.execute(
            sa.insert(tables.xet_files).values(
                file_hash=name,
                sha256=sha256,
                size=entry.size,
                terms=pack_terms(entry.terms),
                created_at=utcnow(),
            )
        )
        xorbs = sorted({hash_to_string(t.xorb_hash) for t in entry.terms})
        insert_ignore(conn, tables.xet_file_xorbs, [{"file_hash": name, "xorb_hash": x} for x in xorbs])

    def iter_file(
        self, terms: tuple[FileTerm, ...], start: int = 0, end: int | None = None
    ) -> Iterator[memoryview]:
        """Bytes `[start, end)` of the file made of `terms`, every chunk re-hashed on the way."""
        if not terms:
            return iter(())
        return iter_file_bytes(terms, self.xorb_info, self.read_xorb, start, end)

    def sha256_of(self, terms: tuple[FileTerm, ...]) -> str:
        """The sha256 of a file rebuilt from its terms: what a shard's claim is checked against.

        Chunk hashes are not recomputed: each was when its xorb arrived, and a byte changed in storage since
        then changes this sha256 too, so a false claim fails either way.
        """
        digest = hashlib.sha256()
        if terms:
            window = bytearray(READ_WINDOW)
            for piece in iter_file_bytes(terms, self.xorb_info, self.read_xorb, rehash=False, reuse=window):
                digest.update(piece)
        return digest.hexdigest()

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with transaction(self._engine) as conn:
            yield conn


class XetBlobWriter:
    """Chunks, dedups and packs arriving bytes into xorbs while hashing them with sha256.

    Completed xorbs are stored as soon as they fill up (memory holds one open xorb); `commit` stores the last
    one and records the file under its sha256. Xorbs of an aborted upload stay unreferenced until `gc`.
    """

    def __init__(self, store: XetBlobStore) -> None:
        self._store = store
        self._packer = FilePacker(store.locate_chunk)
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._hash.update(data)
        self._size += len(data)
        self._store_xorbs(self._packer.update(data))

    def _store_xorbs(self, xorbs: list[PackedXorb]) -> None:
        for packed in xorbs:
            self._store.add_xorb(packed.body, packed.info, None)

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        sha256 = self._hash.hexdigest()
        if expected_size is not None and expected_size != self._size:
            raise ContentMismatch(f"expected {expected_size} bytes, received {self._size}")
        if expected_sha256 is not None and expected_sha256 != sha256:
            raise ContentMismatch(f"content sha256 is {sha256}, not the announced {expected_sha256}")
        last, entry = self._packer.finish(bytes.fromhex(sha256))
        self._store_xorbs(last)
        with self._store.connect() as conn:
            self._store.register_file(conn, entry, sha256)
        self._done = True
        return BlobInfo(sha256=sha256, size=self._size)

    def abort(self) -> None:
        self._done = True


def _scatter_read(fd: int, start: int, buffers: Sequence[memoryview]) -> int:
    """`os.preadv` until `buffers` are full or the file ends; returns the bytes read."""
    done, index, pending = 0, 0, list(buffers)
    while index < len(pending):
        count = os.preadv(fd, pending[index : index + _IOV_MAX], start + done)
        if count == 0:
            break
        done += count
        while index < len(pending) and count >= len(pending[index]):
            count -= len(pending[index])
            index += 1
        if count:
            pending[index] = pending[index][count:]
    return done


def _resliced(pieces: Iterator[memoryview], size: int) -> Iterator[memoryview]:
    for piece in pieces:
        for offset in range(0, len(piece), size):
            yield piece[offset : offset + size]


class _ReconstructedFile:
    """A read-only, seekable view of a file rebuilt from xorbs (what `BlobStore.open` promises)."""

    def __init__(self, store: XetBlobStore, file: XetFile) -> None:
        self._store = store
        self._file = file
        self._position = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        end = self._file.size if size < 0 else min(self._file.size, self._position + size)
        if end <= self._position:
            return b""
        data = b"".join(self._store.iter_file(self._file.terms, self._position, end))
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
