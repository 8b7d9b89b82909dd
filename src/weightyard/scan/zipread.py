"""A zip reader that sees what every consumer sees: it reads the central directory the way libtorch's
miniz does, notes where Python's zipfile or a streaming reader would disagree, and decompresses with a
budget. It never trusts CRCs, because PyTorch does not check them."""

from __future__ import annotations

import bz2
import itertools
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from weightyard.scan.buffer import Data, unpack_at
from weightyard.scan.limits import Budget, FormatError, LimitExceeded, OutputLimitExceeded
from weightyard.scan.report import Finding, Severity

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF
_FLAG_ENCRYPTED = 0x1
_FLAG_DESCRIPTOR = 0x8
_FLAG_PATCHED = 0x20
_FLAG_STRONG = 0x40
_FLAG_MASKED = 0x2000
STORED, DEFLATED, BZIP2 = 0, 8, 12
_CHUNK = 1 << 20


class ZipFormatError(FormatError):
    pass


@dataclass
class Member:
    name: str
    flags: int
    method: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int = -1
    local_name: str | None = None
    hidden: bool = False
    external_attr: int = 0

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass
class ZipListing:
    members: list[Member]
    findings: list[Finding]


def find_eocd(data: Data) -> int:
    """Offset of the end record loaders read, or -1: miniz (libtorch) and Python's zipfile both take the
    last signature with room for the record, whether or not its comment length fits the file."""
    start = max(0, len(data) - (_MAX_COMMENT + 22))
    pos = data.rfind(_EOCD, start)
    while pos >= 0:
        if pos + 22 <= len(data):
            return pos
        pos = data.rfind(_EOCD, start, pos)
    return -1


def _end_records(data: Data) -> list[int]:
    """Every end record in the tail whose central directory is where it says."""
    found = []
    start = max(0, len(data) - (_MAX_COMMENT + 22))
    pos = data.rfind(_EOCD, start)
    while pos >= 0:
        if pos + 22 <= len(data):
            entries, cd_size = unpack_at("<HI", data, pos + 10)
            first = pos - cd_size
            if first >= 0 and (data[first : first + 4] == _CENTRAL or entries == cd_size == 0):
                found.append(pos)
        pos = data.rfind(_EOCD, start, pos)
    return found


def has_central_directory(data: Data) -> bool:
    """An end record whose central directory is where it says: a zip read from its end, not text or
    random bytes that happen to contain the end signature."""
    return bool(_end_records(data))


def _zip64_extra(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + length
    return size, csize, offset


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")


def list_members(data: Data, where: str, budget: Budget) -> ZipListing:
    """Every member any reader lists: the directory of the end record loaders read, then those of other
    end records in the tail (a reader that wants a fitting comment takes another one). Directories that
    disagree make the archive unsafe: what was scanned is not what a loader would load."""
    eocd = find_eocd(data)
    if eocd < 0:
        raise ZipFormatError("no end-of-central-directory record")
    members, findings = _read_directory(data, eocd, where, budget)
    listed = {(m.name, m.header_offset) for m in members}
    for other in _end_records(data):
        if other == eocd or any(m.data_offset <= other < m.data_offset + m.compressed_size for m in members):
            continue  # an archive stored inside a member has its own end record
        try:
            alternative, _ = _read_directory(data, other, where, budget)
        except (ZipFormatError, struct.error):
            continue
        if {(m.name, m.header_offset) for m in alternative} != listed:
            findings.append(
                Finding(
                    "zip.reader-differential",
                    Severity.CRITICAL,
                    where,
                    f"end records at {eocd} and {other}",
                    "zip readers would list different members; every listing was scanned",
                )
            )
        known = {m.header_offset for m in members}
        members += [m for m in alternative if m.header_offset not in known]
    _find_hidden_members(data, members, where, findings)
    _check_overlaps(members, where, findings)
    return ZipListing(members, findings)


def _read_directory(data: Data, eocd: int, where: str, budget: Budget) -> tuple[list[Member], list[Finding]]:
    _, _, _, entries, cd_size, cd_offset, _ = unpack_at("<HHHHIIH", data, eocd + 4)
    if eocd >= 20 and data[eocd - 20 : eocd - 16] == _EOCD64_LOCATOR:
        (eocd64,) = unpack_at("<Q", data, eocd - 12)
        if eocd64 + 56 <= len(data) and data[eocd64 : eocd64 + 4] == _EOCD64:
            entries, cd_size, cd_offset = unpack_at("<Q8xQQ", data, eocd64 + 24)
            eocd = eocd64
    if entries > budget.limits.archive_members:
        raise LimitExceeded("limit.archive-members", f"archive declares {entries} members")
    findings: list[Finding] = []
    # Python's zipfile tolerates bytes prepended to the archive by shifting every offset; so must we.
    prefix = eocd - cd_size - cd_offset
    if prefix < 0:
        raise ZipFormatError("central directory lies outside the file")
    members: list[Member] = []
    pos = cd_offset + prefix
    cd_end = pos + cd_size
    # Some readers trust the entry count, others walk the directory's bytes: read every entry either sees.
    while pos < cd_end or len(members) < entries:
        if data[pos : pos + 4] != _CENTRAL:
            if len(members) >= entries:
                break
            raise ZipFormatError(f"bad central directory entry at {pos}")
        if len(members) >= budget.limits.archive_members:
            raise LimitExceeded("limit.archive-members", "archive has too many members")
        fields = unpack_at("<HHHHHHIIIHHHHHII", data, pos + 4)
        flags, method = fields[2], fields[3]
        csize, size, name_len, extra_len, comment_len = (
            fields[7],
            fields[8],
            fields[9],
            fields[10],
            fields[11],
        )
        offset = fields[15]
        name_raw = bytes(data[pos + 46 : pos + 46 + name_len])
        extra = bytes(data[pos + 46 + name_len : pos + 46 + name_len + extra_len])
        size, csize, offset = _zip64_extra(extra, size, csize, offset)
        member = Member(_decode_name(name_raw, flags), flags, method, csize, size, offset + prefix)
        member.external_attr = fields[14]
        members.append(member)
        pos += 46 + name_len + extra_len + comment_len
    if len(members) != entries:
        findings.append(
            Finding(
                "zip.entry-count-mismatch",
                Severity.CRITICAL,
                where,
                f"{len(members)} entries, {entries} declared",
                "the directory holds a different number of members than its end record says",
            )
        )
    if prefix > 0:
        findings.append(
            Finding(
                "zip.prepended-data",
                Severity.WARNING,
                where,
                f"{prefix} bytes",
                "data precedes the archive; loaders disagree on whether this is a zip",
            )
        )
    _read_local_headers(data, members, where, findings)
    return members, findings


def _read_local_headers(data: Data, members: list[Member], where: str, findings: list[Finding]) -> None:
    for m in members:
        off = m.header_offset
        if off + 30 > len(data) or data[off : off + 4] != LOCAL:
            findings.append(
                Finding(
                    "zip.bad-local-header",
                    Severity.ERROR,
                    f"{where}/{m.name}",
                    m.name,
                    "member's local header is missing, so its data cannot be located",
                )
            )
            continue
        local_flags = unpack_at("<H", data, off + 6)[0]
        name_len, extra_len = unpack_at("<HH", data, off + 26)
        m.local_name = _decode_name(bytes(data[off + 30 : off + 30 + name_len]), local_flags)
        m.data_offset = off + 30 + name_len + extra_len
        if m.local_name != m.name:
            findings.append(
                Finding(
                    "zip.name-mismatch",
                    Severity.CRITICAL,
                    f"{where}/{m.name}",
                    f"{m.name!r} vs {m.local_name!r}",
                    "local and central names differ; tools disagree on what this member is",
                )
            )


def _find_hidden_members(data: Data, members: list[Member], where: str, findings: list[Finding]) -> None:
    """A streaming reader walks local headers from the start; members only it sees are hidden."""
    known = {m.header_offset for m in members}
    pos = min(known) if known else 0
    seen = 0
    while pos + 30 <= len(data) and data[pos : pos + 4] == LOCAL and seen < len(members) + 1000:
        seen += 1
        flags, method = unpack_at("<HH", data, pos + 6)
        csize, size, name_len, extra_len = unpack_at("<IIHH", data, pos + 18)
        data_offset = pos + 30 + name_len + extra_len
        if pos not in known:
            name = _decode_name(bytes(data[pos + 30 : pos + 30 + name_len]), flags)
            members.append(Member(name, flags, method, csize, size, pos, data_offset, name, hidden=True))
            findings.append(
                Finding(
                    "zip.hidden-member",
                    Severity.CRITICAL,
                    f"{where}/{name}",
                    name,
                    "member is in the local headers but not in the central directory",
                )
            )
        if flags & _FLAG_DESCRIPTOR:
            break
        pos = data_offset + csize


def _check_overlaps(members: list[Member], where: str, findings: list[Finding]) -> None:
    spans = sorted(
        (m.header_offset, m.data_offset + m.compressed_size, m.name) for m in members if m.data_offset >= 0
    )
    for (_, end, name), (start, _, next_name) in itertools.pairwise(spans):
        if start < end:
            findings.append(
                Finding(
                    "zip.overlapping-members",
                    Severity.CRITICAL,
                    f"{where}/{next_name}",
                    f"{name} / {next_name}",
                    "members share bytes, the construction of non-recursive zip bombs and of parser tricks",
                )
            )
            return


def flag_finding(m: Member, where: str) -> Finding | None:
    """Encryption and patch flags make strict readers refuse a member that lenient ones still load; the
    content is scanned anyway (if it really is encrypted, it will not parse and the file is unscannable)."""
    flags = m.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG | _FLAG_MASKED | _FLAG_PATCHED)
    if not flags:
        return None
    return Finding(
        "zip.flag-bits",
        Severity.WARNING,
        f"{where}/{m.name}",
        f"0x{flags:04x}",
        "encryption or patch flags set; zip readers disagree on whether to load this member",
    )


def member_problem(m: Member) -> str | None:
    """Why a member's content cannot be read, or None."""
    if m.method not in (STORED, DEFLATED, BZIP2):
        return f"unsupported compression method {m.method}"
    if m.data_offset < 0:
        return "member data cannot be located"
    return None


def read_member(
    data: Data, m: Member, budget: Budget, limit: int | None = None, *, peek: bool = False
) -> bytes:
    """The member's content, decompressed with a cap; a member over the cap raises LimitExceeded, unless
    `peek` asks only for its first `limit` bytes."""
    cap = budget.limits.member_bytes if limit is None else limit
    end = m.data_offset + m.compressed_size
    if end > len(data):
        raise ZipFormatError(f"member {m.name!r} runs past the end of the file")
    if m.method == STORED:
        return bytes(data[m.data_offset : min(end, m.data_offset + cap)])
    decomp: Decompressor = zlib.decompressobj(-15) if m.method == DEFLATED else bz2.BZ2Decompressor()
    return decompress_stream(decomp, data, budget, cap, start=m.data_offset, end=end, peek=peek)[0]


if TYPE_CHECKING:
    Decompressor = zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor
_ZLIB_DECOMPRESS = type(zlib.decompressobj())


def decompress_stream(
    decomp: Decompressor,
    raw: Data,
    budget: Budget,
    cap: int,
    *,
    start: int = 0,
    end: int | None = None,
    peek: bool = False,
) -> tuple[bytes, int]:
    """Decompress the stream in `raw[start:end]` a chunk at a time (the input is never copied whole),
    stopping at `cap` bytes of output and charging the shared budget. Also returns the offset where the
    stream ended (`end` when it did not), so that a caller can go on to the next stream of a multi-stream
    file. With `peek`, output past `cap` is cut off instead of raising."""
    end = len(raw) if end is None else end
    out = bytearray()
    for pos in range(start, end, _CHUNK):
        piece = feed = bytes(raw[pos : min(pos + _CHUNK, end)])
        while True:
            budget.check_time()
            chunk = decomp.decompress(feed, _CHUNK)
            out += chunk
            budget.spend_decompressed(len(chunk))
            if len(out) > cap and peek:
                return bytes(out[:cap]), end
            if len(out) > cap:
                tail = len(decomp.unconsumed_tail) if isinstance(decomp, _ZLIB_DECOMPRESS) else 0
                raise OutputLimitExceeded(cap, pos - start + len(piece) - tail)
            if decomp.eof:
                return bytes(out), pos + len(piece) - len(decomp.unused_data)
            if isinstance(decomp, _ZLIB_DECOMPRESS):
                feed = decomp.unconsumed_tail
                if not feed:
                    break
            else:
                feed = b""
                if decomp.needs_input:
                    break
    return bytes(out), end
